"""The config system: YAML 1.2 numbers, sections vs values, finite numbers, field documentation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

from apsconfig import ConfigError, config_help, field_docs, leaves, load_config, parse_yaml
from calibration.cli import BoardCommandConfig
from calibration.handeye import HandEyeConfig
from calibration.intrinsics import IntrinsicsConfig
from policies.config import LearnerConfig
from sim.pretrain import PretrainConfig


@dataclass
class Inner:
    rate: float = 1.0  # a trailing comment documents a field
    # A comment block above a field
    # documents it too.
    name: str = "x"


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    maybe: Inner | None = None  # an optional section
    count: int = 3
    flags: list[str] | None = None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1e-3", 0.001),
        ("-2.5E+2", -250.0),
        (".5", 0.5),
        ("1.", 1.0),
        ("010", 10),  # YAML 1.1 reads octal 8
        ("0o17", 15),
        ("0x1F", 31),
        ("true", True),
        ("yes", "yes"),  # YAML 1.1 reads True
        ("off", "off"),
        ("1_000", "1_000"),
        ("2026-11-30", "2026-11-30"),  # YAML 1.1 reads a date
        ("~", None),
    ],
)
def test_scalars_follow_yaml_1_2(text: str, expected: object) -> None:
    value = parse_yaml(text)
    assert value == expected and type(value) is type(expected)


def test_ordinary_numbers_are_numbers_in_files_and_overrides(tmp_path) -> None:
    assert load_config(LearnerConfig, None, ["actor_lr=1e-3"]).actor_lr == 0.001
    path = tmp_path / "learner.yaml"
    path.write_text("critic_lr: 3e-4\nbeta: .5\n")
    loaded = load_config(LearnerConfig, path)
    assert (loaded.critic_lr, loaded.beta) == (3e-4, 0.5)


@pytest.mark.parametrize(
    "overrides",
    [
        ["network=3", "network.core=lstm"],
        ["network.core=lstm", "network=3"],
        ["network=3"],
        ["network=[1, 2]"],
    ],
)
def test_a_section_never_becomes_a_value(overrides: list[str]) -> None:
    with pytest.raises(ConfigError, match=r"network is a section, not a value"):
        load_config(LearnerConfig, None, overrides)


def test_a_value_never_becomes_a_section(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"network\.core is a value, not a section"):
        load_config(LearnerConfig, None, ["network.core.kind=lstm"])
    with pytest.raises(ConfigError, match=r"network\.core: \{\} is not one of"):
        load_config(LearnerConfig, {"network": {"core": {}}})
    path = tmp_path / "bad.yaml"
    path.write_text("network: 3\n")
    with pytest.raises(ConfigError, match=r"network is a section, but the config gives it 3"):
        load_config(LearnerConfig, path, ["network.core=lstm"])
    with pytest.raises(ConfigError, match=r"network: expected a mapping, got 3"):
        load_config(LearnerConfig, path)


def test_a_mapping_merges_into_a_section_and_optional_sections_fill_in() -> None:
    config = load_config(LearnerConfig, {"network": {"core_hidden": 32}}, ["network={core: lstm}"])
    assert (config.network.core, config.network.core_hidden) == ("lstm", 32)
    outer = load_config(Outer, None, ["maybe.rate=2e0"])
    assert outer.maybe == Inner(rate=2.0)
    assert load_config(Outer, None, ["maybe=null"]).maybe is None


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("max_weight=.inf", "max_weight"),
        ("beta=.nan", "beta"),
        ("actor_lr=-.inf", "actor_lr"),
    ],
)
def test_non_finite_numbers_are_refused(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"{key}: expected a finite number"):
        load_config(LearnerConfig, None, [override])


def test_non_finite_numbers_are_refused_in_the_job_config() -> None:
    with pytest.raises(ConfigError, match=r"updates_per_step: expected a finite number"):
        load_config(PretrainConfig, None, ["updates_per_step=.nan"])
    with pytest.raises(ConfigError, match=r"learner\.gamma: expected a finite number"):
        load_config(PretrainConfig, {"learner": {"gamma": math.nan}})


def test_typed_values_apply_like_overrides() -> None:
    """The path ROS parameters take: dotted names with values already typed."""
    outer = load_config(Outer, {"count": 1}, values={"inner.rate": 0.25, "count": 7, "flags": ["a"]})
    assert outer == Outer(Inner(0.25), None, 7, ["a"])
    with pytest.raises(ConfigError, match=r"inner\.rat: unknown key; known keys: \['name', 'rate'\]"):
        load_config(Outer, None, values={"inner.rat": 1.0})
    with pytest.raises(ConfigError, match=r"count: expected an integer, got 1.5"):
        load_config(Outer, None, values={"count": 1.5})


def test_field_docs_come_from_the_source_comments() -> None:
    assert field_docs(Inner) == {
        "rate": "a trailing comment documents a field",
        "name": "A comment block above a field documents it too.",
    }
    names = [(leaf.name, leaf.value) for leaf in leaves(Outer)]
    assert names == [
        ("inner.rate", 1.0), ("inner.name", "x"), ("maybe.rate", 1.0), ("maybe.name", "x"),
        ("count", 3), ("flags", None),
    ]  # fmt: skip
    assert [leaf.name for leaf in leaves(Outer())] == ["inner.rate", "inner.name", "maybe", "count", "flags"]


@pytest.mark.parametrize(
    "cls", [PretrainConfig, LearnerConfig, IntrinsicsConfig, HandEyeConfig, BoardCommandConfig]
)
def test_every_setting_of_the_stack_is_documented(cls: type) -> None:
    undocumented = [leaf.name for leaf in leaves(cls) if not leaf.doc]
    assert not undocumented, f"{cls.__name__}: settings without a comment: {undocumented}"
    text = config_help(cls)
    assert all(leaf.name in text for leaf in leaves(cls))
