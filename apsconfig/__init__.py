"""One config system for the whole stack: typed dataclasses, loaded from YAML, checked on load.

Every tool (pretraining, sim, calibration, ROS nodes) describes its settings as a dataclass tree.
`load_config(Cls, path, overrides)` reads YAML, applies ``a.b=value`` overrides from the command
line, and builds the tree, failing with a message that names the offending key when a key is
unknown, a value has the wrong type, a section gets a scalar (or a scalar a section), a number is
not finite, or the YAML is malformed.

Numbers follow YAML 1.2 (``1e-3`` is a float, ``yes`` is a string), not PyYAML's YAML 1.1. A
field's documentation is its comment in the dataclass source (trailing, or the comment lines just
above it), so `config_help` (``--help``) and the ROS parameter descriptions show the same words.

Why not draccus (LeRobot's config library): it reads YAML through PyYAML's 1.1 resolver too, has no
notion of ROS parameters, and would replace ~250 lines with a dependency that still needs this glue.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import math
import re
import textwrap
import tokenize
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that cannot be turned into the typed config."""


# --- YAML 1.2 core schema ------------------------------------------------------------------------


class Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with the YAML 1.2 core schema's implicit types: ``1e-3`` and ``.5`` are
    floats, ``0o17`` is octal, ``010`` is ten, only true/false are booleans (not yes/no/on/off), and
    dates stay strings."""


_YAML11_ONLY = tuple(f"tag:yaml.org,2002:{kind}" for kind in ("bool", "int", "float", "timestamp"))
Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _YAML11_ONLY]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YAML12 = {
    "bool": (r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    "int": (r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    "float": (
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+.0123456789",
    ),
}
for _kind, (_pattern, _first) in _YAML12.items():
    Yaml12Loader.add_implicit_resolver(f"tag:yaml.org,2002:{_kind}", re.compile(_pattern), list(_first))


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    if text.startswith("0o"):
        return int(text[2:], 8)
    return int(text, 16) if text.startswith("0x") else int(text, 10)


def _construct_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> float:
    text = loader.construct_scalar(node).lower()
    if text.endswith(".inf"):
        return -math.inf if text.startswith("-") else math.inf
    return math.nan if text == ".nan" else float(text)


Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
Yaml12Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)


def parse_yaml(text: str) -> Any:
    """YAML 1.2 text -> plain Python values (no arbitrary objects: a safe loader)."""
    return yaml.load(text, Loader=Yaml12Loader)  # a SafeLoader: plain values only


# --- loading ----------------------------------------------------------------------------------


def load_config(
    cls: type[T],
    source: str | Path | Mapping | None = None,
    overrides: list[str] | None = None,
    values: Mapping[str, Any] | None = None,
) -> T:
    """Build ``cls`` from a YAML file (or a mapping), then apply ``key.sub=value`` overrides (text,
    parsed as YAML 1.2) and ``values`` (dotted key -> an already typed value, e.g. ROS parameters)."""
    if source is None:
        data: dict = {}
    elif isinstance(source, Mapping):
        data = _deep_copy(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = parse_yaml(path.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from err
        data = {} if data is None else data
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        try:
            value = parse_yaml(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {err}") from err
        set_path(cls, data, key, value)
    for key, value in (values or {}).items():
        set_path(cls, data, key, value)
    return from_dict(cls, data)


def set_path(cls: type, data: dict, dotted: str, value: Any) -> None:
    """Set ``data[a][b] = value`` for ``dotted = "a.b"``, walking the schema of ``cls``, so a path
    through a scalar field, or a scalar given for a section, is an error that names the key."""
    parts = dotted.split(".")
    node, schema = data, cls
    for depth, part in enumerate(parts):
        where = ".".join(parts[: depth + 1])
        fields = {f.name: f for f in dataclasses.fields(schema)}
        if part not in fields:
            raise ConfigError(f"{where}: unknown key; known keys: {sorted(fields)}")
        section = _section_type(_hints(schema)[part])
        if depth == len(parts) - 1:
            if section is not None and value is not None:
                if not isinstance(value, Mapping):
                    raise ConfigError(
                        f"{where} is a section, not a value: set its keys as {where}.<key>=... "
                        f"(known keys: {sorted(f.name for f in dataclasses.fields(section))}), got {value!r}"
                    )
                if not isinstance(node.get(part), dict):
                    node[part] = {}
                for key, item in value.items():
                    set_path(section, node[part], str(key), item)
                return
            node[part] = value
            return
        if section is None:
            raise ConfigError(f"{where} is a value, not a section: {dotted} does not exist")
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"{where} is a section, but the config gives it {child!r}")
        node, schema = child, section


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where.rstrip('.') or cls.__name__}: expected a mapping, got {data!r}")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where.rstrip('.') or cls.__name__}: unknown key(s) {unknown}; known keys: {sorted(names)}"
        )
    kwargs = {key: _coerce(hints[key], value, f"{where}{key}") for key, value in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where.rstrip('.') or cls.__name__}: {err}") from err


def to_dict(config: Any) -> dict:
    """Plain dict (YAML/JSON-ready) of a config tree."""
    return dataclasses.asdict(config)


def save_config(config: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {hint}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        items = [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {k: _coerce(args[1], v, f"{where}.{k}") if args else v for k, v in value.items()}
    if hint is Any:
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{where}: apsconfig cannot read fields of type {hint!r}")


def _section_type(hint: Any) -> type | None:
    """The dataclass behind a field (also ``Section | None``), or None for a value field."""
    if dataclasses.is_dataclass(hint):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        sections = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
        return sections[0] if len(sections) == 1 else None
    return None


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _deep_copy(data: Mapping) -> dict:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


# --- documentation and flat views (help text, ROS parameters) -------------------------------------


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One value field of a config tree, named as overrides name it (``learner.network.core``)."""

    name: str
    hint: Any
    value: Any  # the default, or the value in the config instance it was read from
    doc: str


def leaves(config: Any, prefix: str = "") -> Iterator[Leaf]:
    """Every value field of a config class (defaults) or instance (its values), depth first."""
    cls = config if isinstance(config, type) else type(config)
    docs = field_docs(cls)
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if isinstance(config, type):
            value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        else:
            value = getattr(config, f.name)
        section = _section_type(hints[f.name])
        if section is not None and (value is not None or isinstance(config, type)):
            yield from leaves(value if value is not None else section, f"{prefix}{f.name}.")
        else:
            yield Leaf(f"{prefix}{f.name}", hints[f.name], value, docs.get(f.name, ""))


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Field name -> its comment in the class source (the trailing comment, else the comment block
    just above it), inherited fields included. Empty when the source is not available."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            docs |= {name: doc for name, doc in _own_field_docs(klass).items() if doc}
    return docs


def _own_field_docs(cls: type) -> dict[str, str]:
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments: dict[int, str] = {}
    code_lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
        elif token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            code_lines.add(token.start[0])
    body = ast.parse(source).body[0]
    docs = {}
    for node in getattr(body, "body", []):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        inline = [
            comments[n] for n in range(node.lineno, (node.end_lineno or node.lineno) + 1) if n in comments
        ]
        above, line = [], node.lineno - 1
        while line in comments and line not in code_lines:
            above.insert(0, comments[line])
            line -= 1
        doc = " ".join(inline) or " ".join(above)
        docs[node.target.id] = re.sub(r"\s+", " ", doc)
    return docs


def type_name(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return "{" + ",".join(str(a) for a in args) + "}"
    if origin in (typing.Union, types.UnionType):
        return " | ".join("null" if a is type(None) else type_name(a) for a in args)
    if origin in (list, tuple):
        return f"list[{type_name(args[0]) if args else 'any'}]"
    if origin is dict:
        return "mapping"
    return getattr(hint, "__name__", str(hint))


def config_help(cls: type, width: int = 100) -> str:
    """Every setting of ``cls`` with its type, default and documentation: the ``--help`` epilog."""
    lines = [f"settings of {cls.__name__} (override any as key.sub=value; numbers are YAML 1.2):"]
    for leaf in leaves(cls):
        default = "none" if leaf.value is None else yaml.safe_dump(leaf.value, default_flow_style=True)
        default = default.strip().removesuffix("...").strip()
        lines.append(f"  {leaf.name} ({type_name(leaf.hint)}, default {default})")
        if leaf.doc:
            lines += textwrap.wrap(leaf.doc, width, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines)
