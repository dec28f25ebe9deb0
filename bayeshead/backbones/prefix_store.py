"""On-disk, memory-mapped storage of per-example prefix states (one folder per cache).

Layout of a cache folder (all arrays little-endian, C order)::

    states.bin     (R, d) hidden states, the backbone's dtype (bfloat16 stored as its 16-bit pattern)
    positions.bin  (R,) int64 position id of each stored row
    offsets.bin    (N + 1,) int64: example i owns rows offsets[i] .. offsets[i+1]-1
    keys.bin       (N, 16) uint8: a digest of example i's real token ids (how batches find it)
    manifest.json  written last: format version, the fingerprints the cache was written for,
                   shapes, dtype and the exact byte size of every file

For cached blocks k >= 1 the rows of an example are its real (unpadded) tokens, whose attention
mask is all ones by construction; for k = 0 each example has one row, its pooled feature vector.

A folder is written in a temporary sibling and renamed into place with the manifest inside, so a
crash never leaves a half-written folder under the final name. :func:`open_store` refuses a folder
without a manifest, a file whose size differs from the manifest's (truncated or partial copy), and a
manifest whose fingerprints differ from the expected ones (another model, data, prompt or k).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bayeshead.errors import InputTypeError, UserInputError

__all__ = ["PrefixCacheError", "PrefixCacheMismatch", "PrefixStore", "write_store", "open_store", "MANIFEST"]

MANIFEST = "manifest.json"
FORMAT = "bayeshead-prefix-cache"
VERSION = 1

_NUMPY_DTYPES = {
    "float32": np.float32,
    "float64": np.float64,
    "float16": np.float16,
    "bfloat16": np.int16,  # numpy has no bfloat16: store the bit pattern, view it back in torch
}


class PrefixCacheError(UserInputError):
    """A prefix-cache folder that is missing, truncated or unreadable."""


class PrefixCacheMismatch(PrefixCacheError):
    """A prefix-cache folder written for another model, data set, prompt/tokenisation or k."""


@dataclass
class PrefixStore:
    """An opened cache: memory-mapped arrays and the manifest they were written with."""

    folder: Path
    manifest: dict[str, Any]
    states: np.ndarray
    positions: np.ndarray
    offsets: np.ndarray
    keys: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def rows(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(states (L_i, d), positions (L_i,)) of example ``index``, copied out of the memory map."""
        lo, hi = int(self.offsets[index]), int(self.offsets[index + 1])
        states = torch.from_numpy(np.array(self.states[lo:hi]))
        if self.manifest["dtype"] == "bfloat16":
            states = states.view(torch.bfloat16)
        return states, torch.from_numpy(np.array(self.positions[lo:hi]))


def _files(n_rows: int, width: int, n_examples: int, dtype: str) -> dict[str, tuple[Any, tuple[int, ...]]]:
    return {
        "states.bin": (_NUMPY_DTYPES[dtype], (n_rows, width)),
        "positions.bin": (np.int64, (n_rows,)),
        "offsets.bin": (np.int64, (n_examples + 1,)),
        "keys.bin": (np.uint8, (n_examples, 16)),
    }


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach().cpu().contiguous()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.view(torch.int16)
    return tensor.numpy()


def write_store(
    folder: str | Path,
    fingerprints: Mapping[str, Any],
    states: torch.Tensor,
    positions: torch.Tensor,
    offsets: torch.Tensor,
    keys: np.ndarray,
) -> Path:
    """Write a cache folder atomically (temporary sibling, manifest last, then rename); returns it.

    ``states`` (R, d), ``positions`` (R,), ``offsets`` (N+1,), ``keys`` (N, 16) uint8."""
    folder = Path(folder)
    dtype = str(states.dtype).removeprefix("torch.")
    if dtype not in _NUMPY_DTYPES:
        raise InputTypeError(f"prefix states must be float16/bfloat16/float32/float64, got {states.dtype}")
    n_rows, width = states.shape
    n_examples = len(offsets) - 1
    if int(offsets[-1]) != n_rows or positions.shape != (n_rows,) or keys.shape != (n_examples, 16):
        raise UserInputError(
            f"inconsistent prefix cache arrays: {n_rows} state rows, {tuple(positions.shape)} positions, "
            f"offsets ending at {int(offsets[-1])}, keys {keys.shape} for {n_examples} examples"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        arrays = {
            "states.bin": _to_numpy(states),
            "positions.bin": _to_numpy(positions.to(torch.int64)),
            "offsets.bin": _to_numpy(offsets.to(torch.int64)),
            "keys.bin": np.ascontiguousarray(keys, dtype=np.uint8),
        }
        sizes = {}
        for name, array in arrays.items():
            with open(tmp / name, "wb") as handle:
                handle.write(array.tobytes())
                handle.flush()
                os.fsync(handle.fileno())
            sizes[name] = array.nbytes
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "fingerprints": dict(fingerprints),
            "dtype": dtype,
            "n_examples": n_examples,
            "n_rows": n_rows,
            "width": width,
            "sizes": sizes,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        if folder.exists():  # an invalid older folder under the same name: replace it
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        raise PrefixCacheError(
            f"prefix cache {str(folder)!r} has no {MANIFEST} (not a cache folder, or a write that never "
            "finished); delete the folder and let it be rebuilt"
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise PrefixCacheError(f"prefix cache {str(folder)!r}: unreadable {MANIFEST} ({err}); delete the folder") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise PrefixCacheError(
            f"prefix cache {str(folder)!r} has format {manifest.get('format')!r} version {manifest.get('version')!r}, "
            f"expected {FORMAT!r} version {VERSION}; delete the folder and let it be rebuilt"
        )
    return manifest


def _check_fingerprints(folder: Path, found: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    differ = sorted(key for key in set(found) | set(expected) if found.get(key) != expected.get(key))
    if differ:
        details = "; ".join(f"{key}: cache {found.get(key)!r} != now {expected.get(key)!r}" for key in differ)
        raise PrefixCacheMismatch(
            f"prefix cache {str(folder)!r} was written for another {', '.join(differ)} ({details}). "
            "Its states would not be this model's on this data; use the cache folder built for this "
            "model, data and prompt (bayeshead picks it by these fingerprints), or delete this one."
        )


def open_store(folder: str | Path, expected: Mapping[str, Any] | None = None) -> PrefixStore:
    """Open a cache folder read-only (memory-mapped), checking file sizes against the manifest and,
    when ``expected`` is given, the fingerprints it was written for."""
    folder = Path(folder)
    manifest = _read_manifest(folder)
    if expected is not None:
        _check_fingerprints(folder, manifest["fingerprints"], expected)
    files = _files(manifest["n_rows"], manifest["width"], manifest["n_examples"], manifest["dtype"])
    arrays = {}
    for name, (dtype, shape) in files.items():
        path = folder / name
        want = int(np.prod(shape)) * np.dtype(dtype).itemsize
        size = path.stat().st_size if path.is_file() else None
        if size != want or manifest["sizes"].get(name) != want:
            raise PrefixCacheError(
                f"prefix cache {str(folder)!r}: {name} is {size if size is not None else 'missing'} bytes but the "
                f"manifest needs {want} (a truncated or partial cache); delete the folder and let it be rebuilt"
            )
        arrays[name] = (
            np.memmap(path, dtype=dtype, mode="r", shape=shape) if want else np.zeros(shape, dtype=dtype)
        )
    return PrefixStore(
        folder,
        manifest,
        arrays["states.bin"],
        arrays["positions.bin"],
        np.array(arrays["offsets.bin"]),
        np.array(arrays["keys.bin"]),
    )
