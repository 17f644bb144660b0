"""A node's settings as ROS parameters: one dotted parameter per leaf of its config dataclass.

    config = declare_config(node, PolicyNodeConfig)   # typed, checked; node.get_parameter works too

Parameters are spelt as apsconfig's overrides spell them (``sampling``, ``tolerance.sync``), with
the dataclass default as their default, the field's comment as their description, and the same
checks as every other config of the stack: the node must be created with
``automatically_declare_parameters_from_overrides=True`` (see `node_options`), so that a key in the
YAML that the config does not know (a typo) is caught and named instead of silently ignored, and a
wrong type is an error naming the key. A config class lists the leaves that shape a network or a
process in a ``READ_ONLY`` class attribute (dotted names or section prefixes): those are read-only
parameters. Runtime changes to the others go through the same config class (its ``__post_init__``
checks included); a refused change returns the reason.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter

from apsconfig import ConfigError, Leaf, leaves, load_config, type_name

T = TypeVar("T")

# Parameters every rclpy node may be given that belong to ROS itself, not to a config.
ROS_OWN_PARAMETERS = frozenset({"use_sim_time", "start_type_description_service"})
ROS_OWN_PREFIXES = ("qos_overrides.",)


def node_options() -> dict[str, Any]:
    """Keyword arguments for `Node.__init__` that `declare_config` needs."""
    return {"automatically_declare_parameters_from_overrides": True}


def read_only_leaves(cls: type) -> tuple[str, ...]:
    """The leaves (dotted names or section prefixes) a config class marks read-only."""
    return tuple(getattr(cls, "READ_ONLY", ()))


def is_read_only(name: str, marks: Iterable[str]) -> bool:
    return any(name == mark or name.startswith(mark + ".") for mark in marks)


def _parameter_type(hint: Any) -> tuple[Parameter.Type, bool]:
    """The ROS parameter type of a leaf's type hint, and whether it may also be null (dynamic)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        values = [a for a in args if a is not type(None)]
        if len(values) != 1:
            raise TypeError(f"a ROS parameter cannot hold {hint!r}")
        return _parameter_type(values[0])[0], True
    if origin is typing.Literal:
        kinds = {type(a) for a in args}
        if len(kinds) != 1:
            raise TypeError(f"a ROS parameter cannot hold {hint!r} (mixed literal types)")
        hint = kinds.pop()
    if origin in (list, tuple):
        item = _parameter_type(args[0] if args else str)[0]
        arrays = {
            Parameter.Type.BOOL: Parameter.Type.BOOL_ARRAY,
            Parameter.Type.INTEGER: Parameter.Type.INTEGER_ARRAY,
            Parameter.Type.DOUBLE: Parameter.Type.DOUBLE_ARRAY,
            Parameter.Type.STRING: Parameter.Type.STRING_ARRAY,
        }
        return arrays[item], False
    scalars = {
        bool: Parameter.Type.BOOL,
        int: Parameter.Type.INTEGER,
        float: Parameter.Type.DOUBLE,
        str: Parameter.Type.STRING,
    }
    if hint not in scalars:
        raise TypeError(f"a ROS parameter cannot hold {hint!r}")
    return scalars[hint], False


def _ros_value(leaf: Leaf, value: Any) -> Any:
    """A config value as rclpy stores it (tuples as lists, ints of float fields as floats)."""
    kind, _ = _parameter_type(leaf.hint)
    if value is None:
        return None
    if kind is Parameter.Type.DOUBLE:
        return float(value)
    if kind is Parameter.Type.DOUBLE_ARRAY:
        return [float(v) for v in value]
    if kind in (Parameter.Type.BOOL_ARRAY, Parameter.Type.INTEGER_ARRAY, Parameter.Type.STRING_ARRAY):
        return list(value)
    return value


def _config_value(value: Any) -> Any:
    """A parameter value as the config system reads it (rclpy gives arrays as array.array)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return list(value)


def _fields(descriptor: ParameterDescriptor) -> dict[str, Any]:
    return {name: getattr(descriptor, name) for name in descriptor.get_fields_and_field_types()}


def _unknown_error(name: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"parameter {name!r} is not a setting of this node{hint}; known: {', '.join(known)}")


def declare_config(node: Node, cls: type[T], on_change: Callable[[T], None] | None = None) -> T:
    """Declare one parameter per leaf of `cls`, load the config from the node's parameter overrides,
    and keep it checked: a runtime change that the config refuses is refused with its reason, one
    that it accepts is passed to `on_change` with the new config. Raises ConfigError naming the key
    for a parameter the config does not know, a wrong type or a refused value."""
    config_leaves = {leaf.name: leaf for leaf in leaves(cls)}
    # Before this call the node holds only what it was given (YAML, --ros-args -p, launch).
    given = {name: node.get_parameter(name).value for name in node.list_parameters([], 0).names}
    unknown = sorted(
        name
        for name in given
        if name not in config_leaves
        and name not in ROS_OWN_PARAMETERS
        and not name.startswith(ROS_OWN_PREFIXES)
    )
    if unknown:
        raise _unknown_error(unknown[0], sorted(config_leaves))
    values = {name: _config_value(given[name]) for name in config_leaves if name in given}
    config = load_config(cls, None, values=values)
    marks = read_only_leaves(cls)
    for leaf in leaves(config):
        kind, nullable = _parameter_type(leaf.hint)
        if node.has_parameter(leaf.name):
            node.undeclare_parameter(leaf.name)
        descriptor = ParameterDescriptor(
            name=leaf.name,
            type=int(kind),
            description=config_leaves[leaf.name].doc,
            additional_constraints=f"type {type_name(leaf.hint)}",
            read_only=is_read_only(leaf.name, marks),
            dynamic_typing=nullable,
        )
        value = _ros_value(leaf, leaf.value)
        if value == []:  # rclpy would infer a byte array from an empty list: declare the type first
            writable = ParameterDescriptor(**{**_fields(descriptor), "read_only": False})
            node.declare_parameter(leaf.name, kind, writable, ignore_override=True)
            node.set_parameters([Parameter(leaf.name, kind, value)])
            node.set_descriptor(leaf.name, descriptor)
        else:
            node.declare_parameter(leaf.name, value, descriptor, ignore_override=True)
    state = {"config": config}

    def check(parameters: list[Parameter]) -> SetParametersResult:
        changes = {}
        for parameter in parameters:
            if parameter.name not in config_leaves:
                return SetParametersResult(
                    successful=False, reason=str(_unknown_error(parameter.name, sorted(config_leaves)))
                )
            changes[parameter.name] = _config_value(parameter.value)
        current = {leaf.name: leaf.value for leaf in leaves(state["config"])}
        try:
            updated = load_config(cls, None, values={**current, **changes})
        except ConfigError as err:
            return SetParametersResult(successful=False, reason=str(err))
        state["config"] = updated
        if on_change is not None:
            on_change(updated)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(check)
    return config
