"""Config loading: defaults, YAML files, key=value overrides and typo errors."""
import pytest
import yaml

from fashion_gluon.config import DEFAULTS, load_config, parse_override, save_config
from fashion_gluon.errors import ConfigError
from fashion_gluon.losses import LossOptions


def test_defaults_are_the_seed_recipe():
    config = load_config()
    assert config["train"]["lr"] == 1e-4 and config["train"]["epochs"] == 28
    assert config["train"]["lr_steps"] == [10, 20] and config["train"]["lr_factors"] == [0.5, 0.1]
    assert config["data"]["input_size"] == [384, 384]
    config["train"]["lr"] = 1.0
    assert DEFAULTS["train"]["lr"] == 1e-4, "load_config must not share the defaults"


@pytest.mark.parametrize("text, key, value", [
    ("train.lr=1e-4", "train.lr", 1e-4),
    ("data.input_size=[256,192]", "data.input_size", [256, 192]),
    ("train.optimizer=adam", "train.optimizer", "adam"),
    ("train.clip_gradient=null", "train.clip_gradient", None),
    ("data.color=false", "data.color", False),
])
def test_parse_override(text, key, value):
    assert parse_override(text) == (key, value)


def test_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"model": {"name": "hourglass", "kwargs": {"num_stacks": 2}},
                                    "train": {"lr": 0.01, "epochs": 3}}))
    config = load_config(path, ["train.lr=0.5", "model.kwargs.num_features=64"])
    assert config["model"] == {"name": "hourglass", "pretrained": False,
                               "kwargs": {"num_stacks": 2, "num_features": 64}}
    assert config["train"]["lr"] == 0.5 and config["train"]["epochs"] == 3
    assert config["train"]["batch_size"] == DEFAULTS["train"]["batch_size"]


def test_save_and_reload_round_trip(tmp_path):
    config = load_config(overrides=["train.lr=0.003", "data.input_size=[128,96]"])
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config


def test_override_typo_lists_close_keys():
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.lrr'; did you mean train\.lr"):
        load_config(overrides=["train.lrr=0.1"])


def test_file_typo_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown config key 'train\.epoch'; did you mean train\.epochs"):
        load_config(path)


@pytest.mark.parametrize("content, message", [
    ("train: [1, 2\n", "not valid YAML"),
    ("- a\n- b\n", "expected a mapping"),
    ("", "c.yaml: empty config file"),
    ("# only a comment\n", "c.yaml: empty config file"),
    ("train: 5\n", "c.yaml: section 'train' must be a mapping of keys, got int 5"),
])
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "c.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_missing_file_and_bad_override(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is not key=value"):
        load_config(overrides=["train.lr"])


def test_shipped_configs_load():
    from pathlib import Path
    configs = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))
    assert len(configs) >= 7
    for path in configs:
        assert load_config(path)["model"]["name"]


@pytest.mark.parametrize("override, message", [
    ("codec.decode=argmax", "^config: codec.decode must be one of dark, quarter, got 'argmax'$"),
    ("train.lr=-1", "train.lr must be > 0, got -1"),
    ("train.lr=abc", "train.lr must be a number, got 'abc'"),
    ("train.epochs=2.5", "train.epochs must be an integer, got 2.5"),
    ("train.batch_size=0", "train.batch_size must be ≥ 1, got 0"),
    ("data.flip_p=1.5", r"data.flip_p must be ≥ 0 and ≤ 1, got 1.5"),
    ("data.crop_area=[0.5]", r"data.crop_area must be two numbers \[a, b\]"),
    ("data.crop_area=[0.8,4.5]", r"data.crop_area must be two numbers \[a, b\] with 0 < a ≤ b ≤ 4.0, got \[0.8, 4.5\]"),
    ("loss.top_k=0", "loss.top_k must be ≥ 1, got 0"),
    ("train.time_budget_s=0", "train.time_budget_s must be > 0, got 0"),
    ("data.color=maybe", "data.color must be true or false, got 'maybe'"),
    ("train.lr_steps=[20,10]", "train.lr_steps .* must be lists of the same length"),
    ("model.name=cpn_foo", "unknown model 'cpn_foo'"),
    ("data.input_size=[100,100]", r"input size \(H, W\) = \(100, 100\) does not suit cpn_resnet50.*e.g. \(128, 128\)"),
    ("data.stride=8", "data.stride=8, but cpn_resnet50 predicts heatmaps at stride 4"),
])
def test_values_are_checked_at_load(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_the_loss_section_is_loss_options():
    assert DEFAULTS["loss"] == LossOptions().as_config() == {
        "fg_weight": 0.0, "top_k": None, "ohkm": True, "integral_weight": 0.0, "integral_beta": 10.0}
    config = load_config(None, ["loss.top_k=4", "loss.ohkm=false"])
    assert LossOptions.from_config(config["loss"]) == LossOptions(top_k=4, ohkm=False)


@pytest.mark.parametrize("override, message", [
    ("loss.fg_weight=-2", "loss.fg_weight must be ≥ 0, got -2"),
    ("loss.top_k=2.5", "loss.top_k must be an integer, got 2.5"),
    ("loss.ohkm=maybe", "loss.ohkm must be true or false, got 'maybe'"),
    ("loss.integral_weight=-1", "loss.integral_weight must be ≥ 0, got -1"),
    ("loss.integral_beta=0", "loss.integral_beta must be > 0, got 0"),
])
def test_a_bad_loss_value_is_refused_at_load_in_one_line_naming_the_key(override, message):
    with pytest.raises(ConfigError) as error:
        load_config(None, [override])
    assert str(error.value) == f"config: {message}"


def test_a_bad_value_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  momentum: 2\n")
    with pytest.raises(ConfigError, match=rf"{path}: train.momentum must be ≥ 0 and ≤ 1, got 2"):
        load_config(path)


def test_shipped_recipes_load_by_name_and_the_demo_reads_cpu_fast():
    from fashion_gluon.tools.demo import DEMO_RECIPE
    config = load_config(DEMO_RECIPE)
    assert config["model"]["name"] == "cpn_resnet18" and config["loss"]["fg_weight"] == 10
    assert load_config("cpn_resnet50")["model"]["pretrained"] is True
    with pytest.raises(ConfigError, match="config file not found: nope .*shipped recipes: .*cpu_fast"):
        load_config("nope")
