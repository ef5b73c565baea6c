import copy

import pytest
import yaml

from deepnormal.config import Params, load_params, parse_params
from deepnormal.errors import DeepnormalError
from tests.conftest import REPO


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def error_for(raw: dict) -> str:
    with pytest.raises(DeepnormalError) as caught:
        parse_params(raw)
    return str(caught.value)


def test_repo_params_are_valid_and_complete():
    params = load_params(REPO / "params.yaml")
    assert isinstance(params, Params)
    # Every key the schema knows is spelled out (and so commented) in params.yaml.
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, model in Params.model_fields.items():
        assert set(raw[section]) == set(model.annotation.model_fields), section


def test_unknown_key_names_the_key_and_the_allowed_ones(raw):
    raw["train"]["patince"] = 5
    message = error_for(raw)
    assert "unknown key 'train.patince'" in message
    assert "patience" in message and "batch_size" in message


def test_unknown_section(raw):
    raw["trian"] = {}
    assert "unknown key 'trian'" in error_for(raw)


def test_missing_section(raw):
    del raw["model"]
    message = error_for(raw)
    assert "missing section 'model'" in message and "generate, model, train" in message


@pytest.mark.parametrize("key, value", [("batch_size", "64"), ("batch_size", 6.5),
                                         ("max_epochs", True), ("patience", None)])
def test_wrong_type_names_key_and_value(raw, key, value):
    raw["train"][key] = value
    message = error_for(raw)
    assert f"'train.{key}'" in message
    assert repr(value) in message


def test_out_of_range_says_the_bound(raw):
    raw["train"]["batch_size"] = 0
    message = error_for(raw)
    assert "'train.batch_size'" in message and "greater than or equal to 1" in message


def test_bad_choice_lists_the_choices(raw):
    raw["model"]["activation"] = "swish"
    message = error_for(raw)
    assert "'model.activation'" in message
    for choice in ("sigmoid", "tanh", "relu", "silu", "gelu"):
        assert choice in message


def test_cross_field_rules(raw):
    bad = copy.deepcopy(raw)
    bad["generate"]["noise_amplitude"] = 2.0
    assert "noise_offset" in error_for(bad)
    bad = copy.deepcopy(raw)
    bad["lr_find"]["min_lr"] = 2.0
    assert "min_lr" in error_for(bad)
    bad = copy.deepcopy(raw)
    bad["data"]["categorical"] = ["zip", "age"]
    assert ("'data': categorical names 'zip', which features does not list; features: "
            "['age'," in error_for(bad))


def test_the_replaced_drop_missing_key_names_its_successor(raw):
    raw["data"]["drop_missing"] = True
    message = error_for(raw)
    assert "unknown key 'data.drop_missing'" in message and "missing" in message


def test_ints_are_accepted_for_floats(raw):
    raw["generate"]["x_low"] = -10
    assert parse_params(raw).generate.x_low == -10.0


def test_unreadable_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  batch_size: [64\n")
    with pytest.raises(DeepnormalError, match=r"params.yaml is not valid YAML at line \d+"):
        load_params(path)


def test_missing_file(tmp_path):
    with pytest.raises(DeepnormalError, match="cannot read"):
        load_params(tmp_path / "params.yaml")


def test_flat_names(raw):
    flat = parse_params(raw).flat(("train",))
    assert flat["train.batch_size"] == raw["train"]["batch_size"]
    assert all(key.startswith("train.") for key in flat)
