"""Faults during saves: a full disk, a read-only folder and SIGKILL, during ``save_pretrained``
and during checkpoint writes. Each must leave the previous model (checkpoint) loadable and
nothing half-written loadable. The disk-full and read-only faults are injected by patching the
writer (tests run as root here, for whom a chmod-ed folder is still writable, and cannot mount
a tmpfs); SIGKILL is real, in a child process. Bad inputs have ids starting "bad-"."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from _helpers import tiny_model
from safetensors.torch import load_file

from bayeshead.model import BayesianModel
from bayeshead.serialization import SerializationError
from bayeshead.training.checkpoint import load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(offline_tokenizer):
    return tiny_model(offline_tokenizer)


def _fail(code: int):  # noqa: ANN202
    def writer(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError(code, os.strerror(code))

    return writer


def _assert_previous_model(model, folder: Path) -> None:  # noqa: ANN001
    again = BayesianModel.from_pretrained(folder, backbone=model.backbone)
    for name, value in model.head.state_dict().items():
        assert torch.equal(again.head.state_dict()[name], value)
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize(
    ("where", "code"),
    [
        pytest.param("bayeshead.serialization.save_file", errno.ENOSPC, id="bad-disk-full-save-pretrained"),
        pytest.param("bayeshead.atomic_folder._write_bytes", errno.ENOSPC, id="bad-disk-full-writing-manifest"),
        pytest.param("pathlib.Path.mkdir", errno.EROFS, id="bad-read-only-folder-save-pretrained"),
    ],
)
def test_bad_a_failed_save_keeps_the_previous_model(model, tmp_path, monkeypatch, where, code):
    folder = model.save_pretrained(tmp_path / "model")
    changed = tiny_model(model.backbone.tokenizer, seed=1)
    monkeypatch.setattr(where, _fail(code))
    with pytest.raises(SerializationError, match=os.strerror(code)):
        changed.save_pretrained(folder)
    monkeypatch.undo()
    _assert_previous_model(model, folder)


@pytest.mark.parametrize(
    ("where", "code"),
    [
        pytest.param("bayeshead.training.checkpoint.save_file", errno.ENOSPC, id="bad-disk-full-checkpoint"),
        pytest.param("bayeshead.training.checkpoint._write_bytes", errno.EROFS, id="bad-read-only-checkpoint"),
    ],
)
def test_bad_a_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch, where, code):
    state = {"w": torch.arange(4.0), "step": 1}
    save_checkpoint(tmp_path, 1, state)
    monkeypatch.setattr(where, _fail(code))
    with pytest.raises(OSError):
        save_checkpoint(tmp_path, 2, {"w": torch.zeros(4), "step": 2})
    monkeypatch.undo()
    step, loaded = load_checkpoint(tmp_path)
    assert step == 1 and torch.equal(loaded["w"], state["w"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {root!r})
    from transformers import AutoTokenizer
    from bayeshead.backbones.huggingface import resolve_model_path
    from tests._helpers import tiny_model
    import bayeshead.atomic_folder as atomic
    import bayeshead.serialization as serialization
    import bayeshead.training.checkpoint as checkpoint
    import torch

    stage, target = sys.argv[1], sys.argv[2]

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    if stage.startswith("checkpoint"):
        checkpoint.save_checkpoint(target, 1, {{"w": torch.arange(4.0)}})
        setattr(checkpoint, "_install" if stage == "checkpoint-install" else "_write_manifest", die)
        checkpoint.save_checkpoint(target, 2, {{"w": torch.zeros(4)}})
    else:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("minilm"))
        tiny_model(tokenizer).save_pretrained(target)
        if stage == "save-tensors":
            real = serialization.save_file
            def half(tensors, path, metadata=None):
                real(tensors, path, metadata=metadata)
                die()
            serialization.save_file = half
        else:
            atomic._install = die
        tiny_model(tokenizer, seed=1).save_pretrained(target)
    print("not killed")
    """
)


def _run_child(stage: str, target: Path) -> None:
    script = _CHILD.format(root=str(ROOT))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run([sys.executable, "-c", script, stage, str(target)], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == -signal.SIGKILL, result.stdout + result.stderr


@pytest.mark.parametrize("stage", [pytest.param("save-tensors", id="bad-sigkill-writing-tensors"),
                                   pytest.param("save-install", id="bad-sigkill-before-swap")])
def test_bad_sigkill_during_save_pretrained_keeps_the_previous_model(model, tmp_path, stage):
    target = tmp_path / "model"
    _run_child(stage, target)
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    assert leftovers  # the killed writer's temporary folder, never loaded
    _assert_previous_model_ignoring_leftovers(model, target)
    with pytest.raises(SerializationError):
        BayesianModel.from_pretrained(leftovers[0], backbone=model.backbone)  # no manifest yet, or unfinished
    model.save_pretrained(target)  # the next save removes the dead writer's leftovers
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def _assert_previous_model_ignoring_leftovers(model, target: Path) -> None:  # noqa: ANN001
    again = BayesianModel.from_pretrained(target, backbone=model.backbone)
    for name, value in model.head.state_dict().items():
        assert torch.equal(again.head.state_dict()[name], value)  # seed 0, not the killed seed-1 save
    assert set(load_file(str(target / "head.safetensors"))) == set(model.head.state_dict())


@pytest.mark.parametrize("stage", [pytest.param("checkpoint-manifest", id="bad-sigkill-checkpoint-files"),
                                   pytest.param("checkpoint-install", id="bad-sigkill-checkpoint-swap")])
def test_bad_sigkill_during_a_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, stage):
    _run_child(stage, tmp_path / "ckpt")
    step, state = load_checkpoint(tmp_path / "ckpt")
    assert step == 1 and torch.equal(state["w"], torch.arange(4.0))
