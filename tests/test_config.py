"""Configs: strict validation naming the field, registry-resolved kinds, YAML/JSON, overrides."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from bayeshead.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    load_config,
    parse_override,
)
from bayeshead.heads.deterministic import DeterministicHeadConfig


def _locs(err: ValidationError) -> list[str]:
    return [".".join(str(p) for p in e["loc"]) for e in err.errors()]


def test_defaults_validate_and_round_trip_through_json():
    config = ExperimentConfig()
    assert isinstance(config.head, DeterministicHeadConfig)
    again = ExperimentConfig.model_validate(json.loads(config.model_dump_json()))
    assert again == config


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        ({"training": {"epochs": 1, "epoch": 2}}, "training.epoch", "Extra inputs"),
        ({"head": {"kind": "no_such_head"}}, "head", "Known heads: "),
        ({"head": {"kind": "deterministic", "weight_decay": "lots"}}, "head.weight_decay", "valid number"),
        ({"head": {"kind": "deterministic", "bogus": 1}}, "head.bogus", "Extra inputs"),
        ({"adapter": {"kind": "lora", "rank": -4}}, "adapter.rank", "greater than 0"),
        ({"adapter": {"kind": "polar", "rank": "eight"}}, "adapter.rank", "valid integer"),
        ({"optimizer": {"kind": "adamw", "lr": -1}}, "optimizer.lr", "greater than 0"),
        ({"backbone": {"pooling": "max"}}, "backbone.pooling", "'cls', 'mean' or 'last_token'"),
        ({"training": {"batch_size": 0}}, "training.batch_size", "greater than 0"),
        ({"head": "deterministic"}, "head", "expected a mapping with a 'kind'"),
    ],
)
def test_bad_configs_name_the_field(raw, field, message):
    with pytest.raises(ValidationError) as info:
        ExperimentConfig.model_validate(raw)
    assert field in _locs(info.value) or any(loc.startswith(field) for loc in _locs(info.value))
    assert message in str(info.value)


def test_yaml_and_json_files_load_the_same(tmp_path):
    yaml_file = tmp_path / "exp.yaml"
    yaml_file.write_text("head:\n  kind: deterministic\n  weight_decay: 0.01\ntraining:\n  epochs: 2\n")
    json_file = tmp_path / "exp.json"
    json_file.write_text(json.dumps({"head": {"kind": "deterministic", "weight_decay": 0.01}, "training": {"epochs": 2}}))
    assert load_config(yaml_file) == load_config(json_file)
    assert load_config(yaml_file).head.weight_decay == 0.01


def test_overrides_are_typed_and_keep_default_kinds():
    config = load_config(overrides=["training.epochs=3", "optimizer.lr=1e-4", "head.weight_decay=0.5", "adapter.kind=lora", "adapter.target_modules=[query, key]"])
    assert config.training.epochs == 3 and config.optimizer.lr == 1e-4
    assert config.optimizer.kind == "adamw" and config.head.weight_decay == 0.5
    assert config.adapter.kind == "lora" and config.adapter.target_modules == ["query", "key"]
    assert parse_override("a.b=null") == (["a", "b"], None)


def test_override_errors(tmp_path):
    with pytest.raises(ConfigError, match="key.path=value"):
        parse_override("training.epochs")
    with pytest.raises(ConfigError, match="empty key"):
        parse_override("training..epochs=2")
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"training": {"epochs": 2}}, ["training.epochs.x=1"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(bad)
