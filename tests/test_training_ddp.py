"""A 2-process DDP run (torchrun, gloo on CPU) equals a 1-process run with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).parent / "ddp_train.py"


def _run(args: list[str], cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    env.pop("WORLD_SIZE", None)
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]


def test_two_process_ddp_equals_one_process(tmp_path):
    _run([sys.executable, str(SCRIPT), str(tmp_path / "one")], tmp_path)
    _run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(SCRIPT), str(tmp_path / "two")],
        tmp_path,
    )
    one = load_file(tmp_path / "one" / "params.safetensors")
    two = load_file(tmp_path / "two" / "params.safetensors")
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-6, atol=1e-7, msg=key)
    h1 = json.loads((tmp_path / "one" / "history.json").read_text())
    h2 = json.loads((tmp_path / "two" / "history.json").read_text())
    assert (h1["world_size"], h2["world_size"]) == (1, 2)
    assert len(h1["history"]) == len(h2["history"]) == 6  # ceil(12 / 5) * 2, the last batch uneven
    for a, b in zip(h1["history"], h2["history"], strict=True):
        assert a.keys() == b.keys()
        for key in ("total", "val_nll"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-6), key
    # only rank 0 wrote checkpoints: one folder per checkpoint step, no leftovers
    names = sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "one" / "checkpoints").iterdir())
    assert not [n for n in names if n.startswith(".tmp")]


@pytest.mark.slow
def test_the_cli_entry_point_runs_under_torchrun(tmp_path):
    from _helpers import train_cli_args

    args = train_cli_args(
        tmp_path, "adapter.kind=polar", "optimizer.kind=riemannian_adam", "head.kind=vbll_classification"
    )
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
          "-m", "bayeshead.cli.main", *args], tmp_path)
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert metrics["steps"] == 3 and (tmp_path / "model" / "adapters.safetensors").is_file()
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["latest", "step-00000002", "step-00000003"]
