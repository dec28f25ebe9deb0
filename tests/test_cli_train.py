"""``bayeshead train``: trains from a config and a data file, checkpoints, resumes, refuses a
corrupt checkpoint with exit status 2."""

from __future__ import annotations

import json

from _helpers import train_cli_args

from bayeshead.cli.main import main


def test_train_checkpoint_resume_and_corrupt_refusal(tmp_path, capsys):
    args = train_cli_args(tmp_path, "adapter.kind=lora", "training.epochs=2")
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "steps in" in out and "acc" in out
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert metrics["steps"] == 6  # 24 rows: 5 test, 2 validation, 17 train: 3 batches x 2 epochs
    assert 0.0 <= metrics["acc"] <= 1.0
    assert (tmp_path / "model" / "adapters.safetensors").is_file()
    assert len(list((tmp_path / "ckpt").glob("step-*"))) == 2  # keep_checkpoints=2

    # resuming a finished run only redoes the post-hoc stage and evaluation
    assert main([*args, "--resume"]) == 0
    assert json.loads((tmp_path / "model" / "metrics.json").read_text())["acc"] == metrics["acc"]

    newest = max((tmp_path / "ckpt").glob("step-*"))
    (newest / "MANIFEST.json").unlink()
    assert main([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "MANIFEST.json" in err and "Traceback" not in err

    assert main(["train", "--output", str(tmp_path / "x"), "--resume"]) == 2
    assert "--checkpoint-dir" in capsys.readouterr().err
