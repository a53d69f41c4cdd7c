"""Config: recipes, dotted overrides, type checks, and errors that list the valid keys."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from milestones.config import (
    RunConfig,
    apply_overrides,
    build_config,
    list_recipes,
    load_yaml,
    parse_override,
    valid_keys,
)
from milestones.errors import ConfigError


def test_overrides_set_typed_values() -> None:
    cfg = apply_overrides(RunConfig(), ["--optim.lr=0.05", "--train.epochs=3", "--data.flip=true",
                                        "--schedule.milestones=[1, 2.5]", "--model.kwargs.in_chans=3",
                                        "--train.clip_grad_norm=null", "--optim.weight_decay=1"])
    assert cfg.optim.lr == 0.05 and cfg.train.epochs == 3 and cfg.data.flip is True
    assert cfg.schedule.milestones == [1.0, 2.5] and cfg.model.kwargs == {"in_chans": 3}
    assert cfg.train.clip_grad_norm is None
    assert isinstance(cfg.optim.weight_decay, float)


def test_unknown_key_lists_valid_ones() -> None:
    with pytest.raises(ConfigError) as e:
        apply_overrides(RunConfig(), ["--optim.lrr=0.1"])
    msg = str(e.value)
    assert "optim.lrr" in msg and "did you mean optim.lr" in msg and "optim.momentum" in msg
    assert "\n" not in msg


@pytest.mark.parametrize(("arg", "needle"), [("--train.epochs=1.5", "integer"), ("--optim.lr=fast", "number"),
                                              ("--data.flip=3", "true or false"), ("--optim=1", "section"),
                                              ("--train.epochs", "--optim.lr=0.05")])
def test_wrong_type_is_explained(arg: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        apply_overrides(RunConfig(), [arg])


def test_shipped_recipes_load_and_name_their_model() -> None:
    names = list_recipes()
    assert "mnist_lenet5" in names and "digits_lenet5" in names
    for name in names:
        data = load_yaml(_recipe_file(name))
        cfg = build_config(config_file=_recipe_file(name))
        assert cfg.model.name == data["model"]["name"]


def _recipe_file(name: str):
    from importlib import resources

    return resources.files("milestones") / "recipes" / f"{name}.yaml"


def test_default_recipe_is_found_and_cli_wins() -> None:
    cfg = build_config(model="lenet5", data="mnist", overrides=["--train.epochs=2"])
    assert cfg.train.loss == "lenet_map" and cfg.data.pad == 2 and cfg.train.epochs == 2
    other = build_config(model="lenet5_modern", data="digits")
    assert other.model.name == "lenet5_modern" and other.data.name == "digits"


def test_bad_yaml_is_one_line(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: {lr: [\n")
    with pytest.raises(ConfigError, match="not valid YAML") as e:
        build_config(config_file=bad)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="does not exist"):
        build_config(config_file=tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        build_config(config_file=tmp_path / "list.yaml")


KEYS = valid_keys()
NUMERIC = [k for k in KEYS if isinstance(_v := eval("RunConfig()." + k), (int, float)) and not isinstance(_v, bool)]


@given(key=st.sampled_from(NUMERIC), value=st.integers(min_value=0, max_value=10**6))
def test_numeric_overrides_round_trip(key: str, value: int) -> None:
    """Any non-negative integer is accepted for a numeric key and read back equal."""
    cfg = apply_overrides(RunConfig(), [f"--{key}={value}"])
    node = cfg
    for part in key.split("."):
        node = getattr(node, part)
    assert node == value


@given(key=st.text(alphabet="abcdefghijklmnopqrstuvwxyz._", min_size=1, max_size=20))
def test_random_keys_either_valid_or_rejected(key: str) -> None:
    """A random dotted key is either a real key (or under model.kwargs) or a ConfigError; never anything else."""
    try:
        apply_overrides(RunConfig(), [f"--{key}=1"])
    except ConfigError:
        return
    assert key in KEYS or key.startswith("model.kwargs.") or key in ("model", "data", "optim", "schedule", "train")


@given(raw=st.text(max_size=30))
def test_parse_override_never_crashes(raw: str) -> None:
    """Whatever follows '=' parses to some YAML value or stays a string; the key is kept verbatim."""
    key, _ = parse_override(f"--optim.name={raw}")
    assert key == "optim.name"


def test_augmentation_settings_are_declared_once() -> None:
    """The eight augmentation options live in ``config.Augmentation`` alone: the ``data.*`` keys and BatchAugment's
    options both inherit them (neither class re-declares one), so a new option cannot reach one and not the other."""
    import dataclasses

    from milestones.config import AUGMENT_KEYS, Augmentation, DataConfig
    from milestones.data import BatchAugment

    assert len(AUGMENT_KEYS) == 8 and "mixup_alpha" in AUGMENT_KEYS
    for cls in (DataConfig, BatchAugment):
        assert issubclass(cls, Augmentation)
        assert not set(cls.__dict__.get("__annotations__", {})) & set(AUGMENT_KEYS), cls
        assert set(AUGMENT_KEYS) <= {f.name for f in dataclasses.fields(cls)}
    assert BatchAugment.for_spec.__doc__ and BatchAugment([0.5], [0.5], flip=True, cutout=4).cutout == 4
