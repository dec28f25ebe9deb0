"""Checkpoints: exact round trips, refusal of damaged folders, crash safety, pruning."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save
from torch import nn

from bayeshead.training.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)

# --------------------------------------------------------------------------------------------
# helpers


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    if tensor.numel() == 0:
        return torch.zeros(0, dtype=torch.uint8)
    return (
        tensor.detach().reshape(-1).clone(memory_format=torch.contiguous_format).view(torch.uint8)
    )


def assert_same(expected: Any, actual: Any, where: str = "state") -> None:
    """Exact equality: same types (tuple stays tuple, int keys stay int), same tensor bits.

    The one documented exception: an ``OrderedDict`` (what ``state_dict()`` returns) comes back
    as a plain dict, with its key order.
    """
    expected_type = dict if type(expected) is OrderedDict else type(expected)
    assert type(actual) is expected_type, f"{where}: {type(actual)} != {type(expected)}"
    if isinstance(expected, torch.Tensor):
        assert actual.dtype == expected.dtype, f"{where}: {actual.dtype} != {expected.dtype}"
        assert actual.shape == expected.shape, f"{where}: {actual.shape} != {expected.shape}"
        assert actual.device.type == "cpu", where
        assert torch.equal(_bits(actual), _bits(expected)), f"{where}: tensor values differ"
    elif isinstance(expected, float):
        if math.isnan(expected):
            assert math.isnan(actual), where
        else:
            assert actual == expected and math.copysign(1, actual) == math.copysign(1, expected), (
                where
            )
    elif isinstance(expected, dict):
        assert list(actual) == list(expected), f"{where}: keys {list(actual)} != {list(expected)}"
        for key in expected:
            assert type(next(k for k in actual if k == key)) is type(key), f"{where}: key {key!r}"
            assert_same(expected[key], actual[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), where
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            assert_same(e, a, f"{where}[{i}]")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def _tmp_entries(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.startswith(".tmp-"))


def _names(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


# --------------------------------------------------------------------------------------------
# round trips


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(8, 3, generator=g), torch.randn(8, 2, generator=g)
    optimizer.zero_grad()
    nn.functional.mse_loss(model(x), y).backward()
    optimizer.step()


def test_round_trip_of_a_realistic_training_state(tmp_path):
    model = _model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.95), weight_decay=0.1)
    for seed in (1, 2):
        _step(model, optimizer, seed)
    generator = torch.Generator().manual_seed(123)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": torch.get_rng_state(),
        "generator": generator.get_state(),
        "history": [[1, 0.5, None], [float("inf"), float("-inf"), float("nan")], []],
        "best": None,
        "epoch": 3,
        "tag": "run-1",
        "done": False,
        "extras": {
            "bf16": torch.tensor([1.5, -2.0], dtype=torch.bfloat16),
            "f64": torch.tensor([[math.pi]], dtype=torch.float64),
            "mask": torch.tensor([True, False, True]),
            "ids": torch.tensor([2**40, -7], dtype=torch.int64),
            "scalar": torch.tensor(0.25),
        },
    }
    folder = save_checkpoint(tmp_path, 2, state)
    assert folder == tmp_path / "step-00000002"
    assert sorted(p.name for p in folder.iterdir()) == [
        "MANIFEST.json",
        "state.json",
        "state.safetensors",
    ]
    assert (tmp_path / "latest").read_text().strip() == "step-00000002"

    step, loaded = load_checkpoint(tmp_path)
    assert step == 2
    assert_same(state, loaded)
    # the parts that a JSON/safetensors split most easily gets wrong
    assert all(type(k) is int for k in loaded["optimizer"]["state"])
    assert type(loaded["optimizer"]["param_groups"][0]["betas"]) is tuple
    assert (
        loaded["rng"].dtype == torch.uint8
        and loaded["model"]["1.num_batches_tracked"].dtype == torch.int64
    )
    assert load_checkpoint(folder)[0] == 2  # a folder loads directly too

    # Resuming continues exactly like the original run.
    resumed = _model()
    resumed.load_state_dict(loaded["model"])
    resumed_optimizer = torch.optim.AdamW(resumed.parameters(), lr=1.0)
    resumed_optimizer.load_state_dict(loaded["optimizer"])
    _step(model, optimizer, 3)
    _step(resumed, resumed_optimizer, 3)
    for (name, p), q in zip(model.named_parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q), name
    restored = torch.Generator()
    restored.set_state(loaded["generator"])
    assert torch.equal(torch.rand(5, generator=restored), torch.rand(5, generator=generator))
    torch.set_rng_state(loaded["rng"])
    first = torch.rand(4)
    torch.set_rng_state(state["rng"])
    assert torch.equal(first, torch.rand(4))


def test_views_shared_storage_and_repeated_tensors(tmp_path):
    base = torch.arange(12.0).reshape(3, 4)
    state = {
        "base": base,
        "transposed": base.t(),
        "row": base[1],
        "strided": base[:, ::2],
        "again": base,
        "grad": torch.ones(2, requires_grad=True) * 3,
    }
    save_checkpoint(tmp_path, 0, state)
    _, loaded = load_checkpoint(tmp_path)
    assert_same({k: v.detach() for k, v in state.items()}, loaded)
    assert loaded["again"] is loaded["base"]  # one tensor object, stored once
    loaded["base"].add_(1)  # loaded tensors are writable and independent of the file
    assert torch.equal(load_checkpoint(tmp_path)[1]["base"], base)


def test_marker_like_user_keys_are_escaped(tmp_path):
    state = {
        "a": {"__tensor__": "t0"},
        "b": {"__tuple__": [1, 2]},
        "c": {"__dict__": []},
        "d": {0: "int", "0": "str", (1, "x"): None, None: 1.5},
        "e": (),
        "f": {},
    }
    save_checkpoint(tmp_path, 1, state)
    assert_same(state, load_checkpoint(tmp_path)[1])


_DTYPES = [
    torch.float32,
    torch.float64,
    torch.float16,
    torch.bfloat16,
    torch.int64,
    torch.int32,
    torch.int8,
    torch.uint8,
    torch.bool,
]


def _make_tensor(dtype: torch.dtype, shape: list[int], seed: int, view: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    full = [2 * shape[0], *shape[1:]] if shape and view else shape
    if dtype.is_floating_point:
        tensor = (torch.randn(full, generator=g) * 100).to(dtype)
    elif dtype == torch.bool:
        tensor = torch.randint(0, 2, full, generator=g).bool()
    else:
        info = torch.iinfo(dtype)
        tensor = torch.randint(info.min, info.max, full, generator=g, dtype=torch.int64).to(dtype)
    return tensor[::2] if shape and view else tensor


_tensors = st.builds(
    _make_tensor,
    st.sampled_from(_DTYPES),
    st.lists(st.integers(0, 3), max_size=3),
    st.integers(0, 2**31),
    st.booleans(),
)
_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    _tensors,
)
_keys = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["__tensor__", "__tuple__", "__dict__"]),
    st.integers(-5, 5),
    st.tuples(st.integers(0, 3), st.text(max_size=3)),
)
_nested = st.recursive(
    _leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(_keys, children, max_size=4),
    ),
    max_leaves=16,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(state=st.dictionaries(_keys, _nested, max_size=4), step=st.integers(0, 10**9))
def test_random_nested_states_round_trip_exactly(state, step):
    with tempfile.TemporaryDirectory() as directory:
        save_checkpoint(directory, step, state)
        loaded_step, loaded = load_checkpoint(directory)
    assert loaded_step == step
    assert_same(state, loaded)


def test_unsupported_objects_are_refused_before_writing(tmp_path):
    target = tmp_path / "ckpt"
    with pytest.raises(
        TypeError, match=r"state\['opt'\]\[1\]: cannot save an object of type .*object"
    ):
        save_checkpoint(target, 1, {"opt": [1, object()]})
    with pytest.raises(TypeError, match="dtype torch.complex128"):
        save_checkpoint(target, 1, {"z": torch.zeros(2, dtype=torch.complex128)})
    with pytest.raises(TypeError, match="dict key"):
        save_checkpoint(target, 1, {"x": {frozenset(): 1}})
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(TypeError, match="cycle"):
        save_checkpoint(target, 1, {"c": cyclic})
    with pytest.raises(ValueError, match="step"):
        save_checkpoint(target, -1, {})
    assert not target.exists()


# --------------------------------------------------------------------------------------------
# damaged checkpoints are refused


@pytest.fixture
def two_checkpoints(tmp_path) -> Path:
    save_checkpoint(tmp_path, 1, {"w": torch.arange(100.0), "note": "one"})
    save_checkpoint(tmp_path, 2, {"w": torch.arange(100.0) * 2, "note": "two"})
    return tmp_path


def test_flipped_byte_is_detected(two_checkpoints):
    path = two_checkpoints / "step-00000002" / "state.safetensors"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01  # inside the tensor data: safetensors itself would not notice
    path.write_bytes(bytes(data))
    with pytest.raises(
        CheckpointError, match=r"state\.safetensors is corrupt: sha256 mismatch"
    ) as info:
        load_checkpoint(two_checkpoints)
    message = str(info.value)
    assert "step-00000002" in message and "step-00000001" in message  # what to resume from
    assert load_checkpoint(two_checkpoints / "step-00000001")[1]["note"] == "one"


def test_truncated_file_is_detected(two_checkpoints):
    path = two_checkpoints / "step-00000002" / "state.json"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(
        CheckpointError, match=r"state\.json has \d+ bytes but MANIFEST\.json says \d+"
    ):
        load_checkpoint(two_checkpoints)


def test_missing_manifest_means_partial(two_checkpoints):
    (two_checkpoints / "step-00000002" / "MANIFEST.json").unlink()
    with pytest.raises(CheckpointError, match="partial checkpoint: MANIFEST.json missing"):
        load_checkpoint(two_checkpoints)
    with pytest.raises(CheckpointError, match="partial checkpoint"):
        load_checkpoint(two_checkpoints / "step-00000002")


@pytest.mark.parametrize(
    ("version", "expected"),
    [(99, "format version 99 is newer"), ("1", "unknown format version '1'")],
)
def test_unknown_manifest_version_is_refused(two_checkpoints, version, expected):
    path = two_checkpoints / "step-00000002" / "MANIFEST.json"
    manifest = json.loads(path.read_text())
    manifest["format_version"] = version
    path.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(two_checkpoints)


def test_missing_listed_file_is_detected(two_checkpoints):
    (two_checkpoints / "step-00000002" / "state.safetensors").unlink()
    with pytest.raises(
        CheckpointError, match="state.safetensors is listed in MANIFEST.json but missing"
    ):
        load_checkpoint(two_checkpoints)


def _rewrite_consistently(folder: Path, file: str, data: bytes) -> None:
    """Replace ``file`` and update MANIFEST.json to match, so that only deeper checks can object."""
    (folder / file).write_bytes(data)
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    manifest["files"][file] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (folder / "MANIFEST.json").write_text(json.dumps(manifest))


def test_dangling_tensor_reference_is_detected(two_checkpoints):
    folder = two_checkpoints / "step-00000002"
    text = (folder / "state.json").read_text()
    _rewrite_consistently(folder, "state.json", text.replace('"t0"', '"t7"').encode())
    with pytest.raises(CheckpointError, match="tensor reference 't7' is not in state.safetensors"):
        load_checkpoint(two_checkpoints)


def test_unreferenced_tensor_is_detected(two_checkpoints):
    folder = two_checkpoints / "step-00000002"
    tensors = load_file(folder / "state.safetensors")
    tensors["t9"] = torch.zeros(2)
    _rewrite_consistently(folder, "state.safetensors", save(tensors))
    with pytest.raises(CheckpointError, match=r"never references: \['t9'\]"):
        load_checkpoint(two_checkpoints)


def test_latest_pointing_to_a_missing_folder(two_checkpoints):
    (two_checkpoints / "latest").write_text("step-00000009\n")
    with pytest.raises(CheckpointError, match="points to step-00000009, which does not exist"):
        load_checkpoint(two_checkpoints)
    with pytest.raises(CheckpointError, match="does not exist"):
        latest_checkpoint(two_checkpoints)
    (two_checkpoints / "latest").write_text("../elsewhere\n")
    with pytest.raises(CheckpointError, match="does not name a checkpoint folder"):
        load_checkpoint(two_checkpoints)


def test_missing_pointer_with_step_folders_is_refused(two_checkpoints):
    (two_checkpoints / "latest").unlink()
    with pytest.raises(CheckpointError, match="no 'latest' pointer, but step folders exist"):
        load_checkpoint(two_checkpoints)


def test_nothing_saved_yet(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None
    assert latest_checkpoint(tmp_path) is None
    assert list_checkpoints(tmp_path / "missing") == []
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        load_checkpoint(tmp_path)


# --------------------------------------------------------------------------------------------
# crash safety and pruning

_KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    from bayeshead.training import checkpoint

    directory = sys.argv[1]
    checkpoint.save_checkpoint(directory, 1, {"w": torch.arange(6.0), "note": "one"})

    def killed_while_writing_manifest(folder, manifest):
        (folder / "MANIFEST.json").write_text('{"format_ver')  # half written, then killed
        os.kill(os.getpid(), signal.SIGKILL)

    checkpoint._write_manifest = killed_while_writing_manifest
    checkpoint.save_checkpoint(directory, 2, {"w": torch.zeros(6), "note": "two"})
    print("still alive")
    """
)


@pytest.mark.slow
def test_killed_writer_leaves_the_previous_checkpoint_loadable(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == -signal.SIGKILL, result.stdout + result.stderr
    assert "still alive" not in result.stdout

    leftovers = _tmp_entries(tmp_path)
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".tmp-step-00000002-")
    assert _names(list_checkpoints(tmp_path)) == ["step-00000001"]
    assert (tmp_path / "latest").read_text().strip() == "step-00000001"
    step, state = load_checkpoint(tmp_path)
    assert step == 1 and state["note"] == "one" and torch.equal(state["w"], torch.arange(6.0))
    with pytest.raises(CheckpointError, match="partial checkpoint: .*the write was interrupted"):
        load_checkpoint(leftovers[0])

    save_checkpoint(tmp_path, 3, {"w": torch.ones(6), "note": "three"})
    assert _tmp_entries(tmp_path) == []
    assert _names(list_checkpoints(tmp_path)) == ["step-00000001", "step-00000003"]
    assert load_checkpoint(tmp_path)[1]["note"] == "three"


def test_stale_temporaries_are_removed_but_live_writers_are_left_alone(tmp_path):
    save_checkpoint(tmp_path, 1, {})
    live = tmp_path / f".tmp-step-00000005-{os.getppid()}-0a1b2c3d"  # the parent process is alive
    own_earlier = tmp_path / f".tmp-step-00000004-{os.getpid()}-deadbeef"  # same pid, not in flight
    foreign = tmp_path / ".tmp-not-ours"
    for folder in (live, own_earlier, foreign):
        folder.mkdir()
    (tmp_path / f".tmp-latest-{os.getpid()}-00ff").write_text("step-00000004\n")
    save_checkpoint(tmp_path, 2, {})
    assert _tmp_entries(tmp_path) == sorted([live, foreign])


def test_keep_prunes_to_the_newest(tmp_path):
    for step in range(1, 6):
        save_checkpoint(tmp_path, step, {"step": step}, keep=2)
        assert len(list_checkpoints(tmp_path)) == min(step, 2)
    assert _names(list_checkpoints(tmp_path)) == ["step-00000004", "step-00000005"]
    assert latest_checkpoint(tmp_path) == tmp_path / "step-00000005"
    assert load_checkpoint(tmp_path) == (5, {"step": 5})

    # The checkpoint just written is never pruned, even when older than the kept ones.
    save_checkpoint(tmp_path, 3, {"step": 3}, keep=2)
    assert _names(list_checkpoints(tmp_path)) == ["step-00000003", "step-00000004", "step-00000005"]
    assert load_checkpoint(tmp_path) == (3, {"step": 3})

    save_checkpoint(tmp_path, 6, {"step": 6}, keep=None)
    assert len(list_checkpoints(tmp_path)) == 4
    assert _tmp_entries(tmp_path) == []


def test_resaving_a_step_replaces_it(tmp_path):
    save_checkpoint(tmp_path, 7, {"v": torch.zeros(3), "note": "first"})
    save_checkpoint(tmp_path, 7, {"v": torch.ones(3), "note": "second"})
    assert _names(list_checkpoints(tmp_path)) == ["step-00000007"]
    assert _tmp_entries(tmp_path) == []
    step, state = load_checkpoint(tmp_path)
    assert step == 7 and state["note"] == "second" and torch.equal(state["v"], torch.ones(3))
