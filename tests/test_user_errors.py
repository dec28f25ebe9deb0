"""User mistakes end as one-line package errors with exit 2, before any training; configs and
data files refuse garbage; ``bayeshead train`` is reproducible bit for bit. Bad inputs have ids
starting "bad-"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _helpers import train_cli_args
from pydantic import ValidationError
from safetensors.torch import load_file

from bayeshead.cli.main import main
from bayeshead.config import ConfigError, load_config
from bayeshead.data.textfile import DataFileError, load_text_file


@pytest.mark.parametrize(
    "override",
    [
        pytest.param("optimizer.lr=.inf", id="bad-lr-inf"),
        pytest.param("optimizer.lr=.nan", id="bad-lr-nan"),
        pytest.param("optimizer.betas=[0.9, 1.0]", id="bad-beta-one"),
        pytest.param("optimizer.betas=[-0.1, 0.99]", id="bad-beta-negative"),
        pytest.param("training.seed=18446744073709551616", id="bad-seed-beyond-64-bits"),
        pytest.param("training.seed=-1", id="bad-seed-negative"),
        pytest.param("backbone.max_length=1000000000000", id="bad-max-length-absurd"),
        pytest.param("training.head_lr=.inf", id="bad-head-lr-inf"),
    ],
)
def test_bad_config_values_are_refused(override):
    with pytest.raises(ValidationError):
        load_config(overrides=[override])


def test_bad_an_empty_target_module_list_is_refused():
    with pytest.raises(ValidationError, match="target_modules is an empty list"):
        load_config(overrides=["adapter.kind=lora", "adapter.target_modules=[]"])


@pytest.mark.parametrize(
    ("suffix", "text"),
    [
        pytest.param(".yaml", "training:\n  epochs: 1\ntraining:\n  epochs: 3\n", id="bad-yaml-duplicate-section"),
        pytest.param(".yaml", "training:\n  epochs: 1\n  epochs: 3\n", id="bad-yaml-duplicate-key"),
        pytest.param(".json", '{"training": {"epochs": 1}, "training": {}}', id="bad-json-duplicate-section"),
    ],
)
def test_bad_config_files_with_a_key_twice_are_refused(tmp_path, suffix, text):
    path = tmp_path / f"c{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigError, match="twice"):
        load_config(path)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


_ROWS = "a great film,1\nawful,0\n"


@pytest.mark.parametrize(
    ("name", "text", "fields", "message"),
    [
        pytest.param("d.csv", "text,label,label\nx,1,0\ny,0,1\n", {}, "more than once", id="bad-csv-duplicate-columns"),
        pytest.param("d.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": "1"}\n{"text": "c", "label": 0}\n',
                     {}, "mix integers and strings", id="bad-mixed-int-string-labels"),
        pytest.param("d.csv", "text,label\n,1\nfine,0\n", {}, "missing value|empty or only whitespace", id="bad-empty-text"),
        pytest.param("d.csv", "text,label\n   ,1\nfine,0\n", {}, "empty or only whitespace", id="bad-whitespace-text"),
        pytest.param("d.csv", "text,label\n" + _ROWS, {"label_field": "text"}, "both as text and as label",
                     id="bad-same-column-text-and-label"),
        pytest.param("d.csv", "text,label\n" + _ROWS + "odd,nan\n", {}, "looks like a missing value", id="bad-label-nan"),
        pytest.param("d.csv", "text,label\n" + _ROWS + "odd,1.5\n", {}, "fractional number", id="bad-label-fraction"),
        pytest.param("d.csv", "text,label\nx,1\ny,1\n", {}, "at least two classes", id="bad-one-class"),
    ],
)
def test_bad_data_files_are_refused(tmp_path, name, text, fields, message):
    with pytest.raises(DataFileError, match=message):
        load_text_file(_write(tmp_path, name, text), **fields)


def _train_fails(tmp_path: Path, capsys, *extra: str, args: list[str] | None = None) -> str:  # noqa: ANN001
    argv = args or train_cli_args(tmp_path, "adapter.kind=lora")
    assert main([*argv, *extra]) == 2
    full = capsys.readouterr().err
    assert "Traceback" not in full
    lines = full.splitlines()  # the backbone's loading bar may come first
    start = next(i for i, line in enumerate(lines) if line.startswith(("error:", "invalid config")))
    err = "\n".join(lines[start:]).strip()
    assert not (tmp_path / "ckpt").exists()  # refused before training
    return err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param(["--set", "adapter.rank=1000"], "rank r=1000 exceeds", id="bad-rank-beyond-layer"),
        pytest.param(["--set", "backbone.device=cuda:7"], "backbone.device='cuda:7'", id="bad-device-unavailable"),
        pytest.param(["--set", "backbone.name_or_path=./no-such-model"], "does not exist", id="bad-backbone-path"),
        pytest.param(["--set", "backbone.max_length=4096"], "the model has 512 positions", id="bad-max-length-positions"),
        pytest.param(["--set", "backbone.trust_remote_code=true"], "--trust-remote-code", id="bad-trust-in-config"),
        pytest.param(["--set", "training.seed=18446744073709551616"], "training.seed", id="bad-seed-cli"),
    ],
)
def test_bad_cli_train_inputs_exit_2_on_one_line_before_training(tmp_path, capsys, extra, message):
    err = _train_fails(tmp_path, capsys, *extra)
    assert message in err
    if err.startswith("error:"):
        assert len(err.splitlines()) == 1


@pytest.mark.parametrize("option", [pytest.param("--output", id="bad-output-is-a-file"),
                                    pytest.param("--checkpoint-dir", id="bad-checkpoint-dir-is-a-file")])
def test_bad_output_folders_that_are_files_are_refused_before_training(tmp_path, capsys, option):
    args = train_cli_args(tmp_path, "adapter.kind=lora")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    args[args.index(option) + 1] = str(blocker)
    err = _train_fails(tmp_path, capsys, args=args)
    assert f"{option} {blocker} is an existing file" in err


def test_bad_an_empty_test_split_is_refused_before_training(tmp_path, capsys):
    args = train_cli_args(tmp_path, "adapter.kind=lora")
    _write(tmp_path, "test.csv", "text,label\n")
    err = _train_fails(tmp_path, capsys, "--test", str(tmp_path / "test.csv"), args=args)
    assert "no data rows" in err or "test split is empty" in err


def test_train_twice_with_one_seed_saves_identical_tensors(tmp_path, capsys):
    folders = []
    for run in ("one", "two"):
        root = tmp_path / run
        root.mkdir()
        assert main(train_cli_args(root, "adapter.kind=lora", "training.seed=3", "training.max_steps=2")) == 0
        folders.append(root / "model")
    capsys.readouterr()
    for file in ("head.safetensors", "adapters.safetensors"):
        first, second = (load_file(str(f / file)) for f in folders)
        assert first.keys() == second.keys()
        for name in first:
            assert torch.equal(first[name], second[name]), f"{file}:{name} differs between two seeded runs"
    assert json.loads((folders[0] / "metrics.json").read_text())["nll"] == json.loads(
        (folders[1] / "metrics.json").read_text()
    )["nll"]
