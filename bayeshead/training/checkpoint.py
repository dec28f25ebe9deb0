"""Crash-safe checkpoints of training state, without pickle.

A checkpoint directory holds one folder per saved step and a pointer to the newest::

    directory/
        latest                  # one line: the name of the newest folder, e.g. "step-00000300"
        step-00000200/
            state.safetensors   # every tensor of the state, named "t0", "t1", ...
            state.json          # everything else, with {"__tensor__": "t3"} where a tensor was
            MANIFEST.json       # written last: format version, step, size + sha256 of each file
        step-00000300/
            ...
        .tmp-step-00000400-<pid>-<random>/   # only while a writer is at work (or was killed)

**What can be saved.** ``state`` is a nested structure of dicts, lists, tuples, tensors and
``None``/``bool``/``int``/``float``/``str`` -- e.g. ``{"model": model.state_dict(),
"optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(), "step": 300}``. It comes
back equal, with these rules:

* dict keys may be ``str``, ``int``, ``float``, ``bool``, ``None`` or tuples of these; non-string
  keys (``optimizer.state_dict()["state"]`` is keyed by int) come back with their type, stored
  as ``{"__dict__": [[key, value], ...]}``; key order is kept;
* tuples come back as tuples (``{"__tuple__": [...]}``), lists as lists;
* ``inf``, ``-inf`` and ``nan`` floats survive (JSON ``Infinity``/``NaN``);
* tensors of every dtype safetensors stores (bool, uint8-64, int8-64, float16/32/64, bfloat16,
  complex64, float8) keep dtype, shape and bits; they are loaded on CPU unless ``map_location``
  says otherwise. Views, non-contiguous and storage-sharing tensors are saved as compact copies.
  ``requires_grad`` and ``nn.Parameter``-ness are not kept (state dicts hold plain tensors). The
  same tensor object appearing twice is stored once and comes back as one object;
* subclasses of ``int``/``float``/``str``/``tuple``/``list``/``dict`` (``IntEnum``, ``numpy.float64``,
  ``torch.Size``, ``OrderedDict``, named tuples) come back as the base type. So a module's
  ``state_dict()`` comes back as a plain dict without its ``_metadata`` attribute, as from any
  safetensors file; ``load_state_dict`` accepts it.

Anything else (numpy arrays, sparse tensors, arbitrary objects, reference cycles) is refused with
a ``TypeError`` naming where in ``state`` it sits -- before anything is written.

**Why a reader never sees a half-written checkpoint.** :func:`save_checkpoint` writes all files
into a temporary sibling folder, fsyncs them, writes ``MANIFEST.json`` last, fsyncs the folder,
and only then renames it to ``step-XXXXXXXX``. ``rename`` is atomic on POSIX, so a ``step-*``
folder either does not exist or is complete; the parent directory is fsynced so the rename
survives a power loss. The ``latest`` pointer is switched (temporary file + ``os.replace``,
again atomic) only after the new folder is in place, so it always names a complete folder. A
writer killed at any point leaves at most a ``.tmp-*`` entry, which readers never look at and the
next :func:`save_checkpoint` removes, and ``latest`` still names the previous checkpoint.

:func:`load_checkpoint` still trusts nothing: it checks the manifest, the format version, the
size and sha256 of every file, and that every tensor reference resolves, and raises
:class:`CheckpointError` (naming the folder, the problem, and the checkpoints left to resume
from) instead of returning anything from a damaged folder.

One writer per checkpoint directory: concurrent :func:`save_checkpoint` calls on the same
directory from several processes are not coordinated (in distributed training, save from rank 0).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from bayeshead.errors import BayesheadError, InputTypeError, UserInputError

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
]

FORMAT_VERSION = 1
FORMAT_NAME = "bayeshead-checkpoint"
MANIFEST_FILE = "MANIFEST.json"
STATE_JSON = "state.json"
STATE_TENSORS = "state.safetensors"
LATEST_FILE = "latest"
_DATA_FILES = (STATE_TENSORS, STATE_JSON)

_STEP_RE = re.compile(r"step-(\d{8,})")
_TMP_PREFIX = ".tmp-"
_TMP_OWNER_RE = re.compile(r"-(\d+)-[0-9a-f]+\Z")  # ".tmp-<what>-<pid>-<random hex>"

_TENSOR = "__tensor__"
_TUPLE = "__tuple__"
_DICT = "__dict__"
_MARKERS = frozenset({_TENSOR, _TUPLE, _DICT})

# The dtypes safetensors both writes and reads back (float8_e8m0fnu / float4 are written only).
_DTYPES = frozenset(
    getattr(torch, name)
    for name in (
        "bool",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "int8",
        "int16",
        "int32",
        "int64",
        "float16",
        "bfloat16",
        "float32",
        "float64",
        "complex64",
        "float8_e4m3fn",
        "float8_e4m3fnuz",
        "float8_e5m2",
        "float8_e5m2fnuz",
    )
    if hasattr(torch, name)
)

# Temporary entries this process is writing right now; pruning never touches them.
_in_flight: set[str] = set()
_in_flight_lock = threading.Lock()


class CheckpointError(UserInputError):
    """A checkpoint that cannot be loaded: missing, partial, corrupt or of an unknown format."""


# --------------------------------------------------------------------------------------------
# state <-> (JSON document, tensors)


class _Encoder:
    """Splits a state into a JSON-able document and a flat ``{name: tensor}`` dict."""

    def __init__(self) -> None:
        self.tensors: dict[str, Tensor] = {}
        self._names: dict[int, str] = {}  # id(original tensor) -> name
        self._storages: set[tuple[str, int]] = set()  # storages already saved without a copy
        self._open: set[int] = set()  # ids of the containers on the current path (cycle check)

    def encode(self, obj: Any, where: str) -> Any:
        if obj is None or isinstance(obj, bool):
            return obj
        if isinstance(obj, int):
            return int(obj)
        if isinstance(obj, float):
            return float(obj)
        if isinstance(obj, str):
            return str(obj)
        if isinstance(obj, Tensor):
            return {_TENSOR: self._tensor(obj, where)}
        if isinstance(obj, (list, tuple, dict)):
            if id(obj) in self._open:
                raise InputTypeError(f"{where}: the state contains a reference cycle; cannot save it")
            self._open.add(id(obj))
            try:
                if isinstance(obj, dict):
                    return self._dict(obj, where)
                items = [self.encode(item, f"{where}[{i}]") for i, item in enumerate(obj)]
                return {_TUPLE: items} if isinstance(obj, tuple) else items
            finally:
                self._open.discard(id(obj))
        raise InputTypeError(
            f"{where}: cannot save an object of type {type(obj).__module__}.{type(obj).__qualname__}; "
            "a checkpoint holds dicts, lists, tuples, tensors, None, bool, int, float and str"
        )

    def _dict(self, obj: dict[Any, Any], where: str) -> Any:
        plain = all(type(key) is str for key in obj) and not (
            len(obj) == 1 and next(iter(obj)) in _MARKERS
        )
        if plain:
            return {key: self.encode(value, f"{where}[{key!r}]") for key, value in obj.items()}
        return {
            _DICT: [
                [self._key(key, where), self.encode(value, f"{where}[{key!r}]")]
                for key, value in obj.items()
            ]
        }

    def _key(self, key: Any, where: str) -> Any:
        if isinstance(key, tuple):
            return {_TUPLE: [self._key(part, where) for part in key]}
        if key is None or isinstance(key, (bool, int, float, str)):
            return self.encode(key, where)
        raise InputTypeError(
            f"{where}: cannot save a dict key of type {type(key).__qualname__} ({key!r}); "
            "keys may be str, int, float, bool, None or tuples of these"
        )

    def _tensor(self, tensor: Tensor, where: str) -> str:
        name = self._names.get(id(tensor))
        if name is not None:
            return name
        if tensor.layout != torch.strided:
            raise InputTypeError(
                f"{where}: cannot save a {tensor.layout} tensor; convert it with .to_dense()"
            )
        if tensor.device.type == "meta":
            raise InputTypeError(f"{where}: cannot save a meta tensor (it has no data)")
        if tensor.dtype not in _DTYPES:
            raise InputTypeError(
                f"{where}: cannot save a tensor of dtype {tensor.dtype} (safetensors does not store it); "
                "convert it first, e.g. torch.view_as_real for complex128"
            )
        data = tensor.detach().to("cpu").resolve_conj().resolve_neg()
        key = (str(data.device), data.untyped_storage().data_ptr())
        whole = (
            data.is_contiguous()
            and data.storage_offset() == 0
            and data.untyped_storage().nbytes() == data.numel() * data.element_size()
        )
        if not whole or (key[1] != 0 and key in self._storages):
            # safetensors refuses views and tensors that share storage: save a compact copy.
            data = data.clone(memory_format=torch.contiguous_format)
        else:
            self._storages.add(key)
        name = f"t{len(self.tensors)}"
        self.tensors[name] = data
        self._names[id(tensor)] = name
        return name


class _Malformed(BayesheadError):
    """Raised while decoding ``state.json``; turned into a :class:`CheckpointError`."""


def _decode(obj: Any, tensors: dict[str, Tensor], used: set[str], where: str) -> Any:
    if isinstance(obj, list):
        return [_decode(item, tensors, used, f"{where}[{i}]") for i, item in enumerate(obj)]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1:
        ((marker, value),) = obj.items()
        if marker == _TENSOR:
            if not isinstance(value, str) or value not in tensors:
                raise _Malformed(f"{where}: tensor reference {value!r} is not in {STATE_TENSORS}")
            used.add(value)
            return tensors[value]
        if marker == _TUPLE:
            if not isinstance(value, list):
                raise _Malformed(f"{where}: {_TUPLE} must hold a list, got {type(value).__name__}")
            return tuple(
                _decode(item, tensors, used, f"{where}[{i}]") for i, item in enumerate(value)
            )
        if marker == _DICT:
            if not isinstance(value, list) or not all(
                isinstance(pair, list) and len(pair) == 2 for pair in value
            ):
                raise _Malformed(f"{where}: {_DICT} must hold a list of [key, value] pairs")
            result: dict[Any, Any] = {}
            for raw_key, raw_value in value:
                key = _decode(raw_key, tensors, used, f"{where}<key>")
                item = _decode(raw_value, tensors, used, f"{where}[{key!r}]")
                try:
                    result[key] = item
                except TypeError:
                    raise _Malformed(f"{where}: dict key {key!r} is not hashable") from None
            return result
    return {key: _decode(value, tensors, used, f"{where}[{key!r}]") for key, value in obj.items()}


# --------------------------------------------------------------------------------------------
# file system helpers


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Make renames and creations inside ``path`` durable (no-op where directories can't be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _describe(path: Path) -> dict[str, Any]:
    return {"size": path.stat().st_size, "sha256": _sha256(path)}


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _temporary(directory: Path, what: str) -> Path:
    return directory / f"{_TMP_PREFIX}{what}-{os.getpid()}-{secrets.token_hex(4)}"


@contextmanager
def _claimed(path: Path) -> Iterator[Path]:
    """Mark ``path`` as being written by this process, so that pruning leaves it alone."""
    with _in_flight_lock:
        _in_flight.add(path.name)
    try:
        yield path
    finally:
        with _in_flight_lock:
            _in_flight.discard(path.name)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but belongs to someone else (or we cannot tell: keep it)
    return True


def _is_stale(name: str) -> bool:
    """A ``.tmp-*`` entry left behind by a killed writer (never one this process is writing)."""
    with _in_flight_lock:
        if name in _in_flight:
            return False
    match = _TMP_OWNER_RE.search(name)
    if match is None:
        return False  # not named by us: leave it
    pid = int(match.group(1))
    # Our own pid but not in flight: a previous process that had the same pid (e.g. a restarted
    # container). Another live pid may be writing right now.
    return pid == os.getpid() or not _pid_alive(pid)


def _step_name(step: int) -> str:
    return f"step-{step:08d}"


# --------------------------------------------------------------------------------------------
# public API


def list_checkpoints(directory: str | os.PathLike[str]) -> list[Path]:
    """The ``step-*`` folders in ``directory``, oldest step first ([] when there are none).

    Folders are listed, not verified; temporary ``.tmp-*`` folders are never listed.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for entry in directory.iterdir():
        match = _STEP_RE.fullmatch(entry.name)
        if match and entry.is_dir():
            found.append((int(match.group(1)), entry.name, entry))
    return [entry for _, _, entry in sorted(found)]


def _others(folder: Path) -> str:
    others = [p.name for p in list_checkpoints(folder.parent) if p.name != folder.name]
    return ", ".join(others) if others else "none is left"


def latest_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    """The folder the ``latest`` pointer of ``directory`` names, or None if nothing was saved yet.

    Raises :class:`CheckpointError` when the pointer is missing although ``step-*`` folders exist
    (a writer was killed between installing its first folder and writing the pointer), when it
    is unreadable, or when it names a folder that does not exist.
    """
    directory = Path(directory)
    if not directory.exists():
        return None
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: not a directory; expected a checkpoint directory")
    pointer = directory / LATEST_FILE
    folders = list_checkpoints(directory)
    if not pointer.exists():
        if not folders:
            return None
        raise CheckpointError(
            f"{directory}: no '{LATEST_FILE}' pointer, but step folders exist "
            f"({', '.join(p.name for p in folders)}); the writer was probably killed before "
            f"switching the pointer. Load one explicitly, e.g. load_checkpoint('{folders[-1]}')"
        )
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{pointer}: cannot read the pointer ({err})") from None
    if not _STEP_RE.fullmatch(name):
        raise CheckpointError(
            f"{pointer}: does not name a checkpoint folder (it says {name!r}); fix or delete it and "
            f"load a folder explicitly: {', '.join(p.name for p in folders) or 'none exists'}"
        )
    target = directory / name
    if not target.is_dir():
        raise CheckpointError(
            f"{pointer}: points to {name}, which does not exist; load a folder explicitly "
            f"or delete the pointer. Checkpoints present: {_others(target)}"
        )
    return target


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write ``MANIFEST.json``: the last file of a checkpoint, its mark of completeness."""
    _write_bytes(folder / MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))


def _install(folder: Path, target: Path) -> None:
    """Rename the complete ``folder`` to ``target``; an existing ``target`` is moved away first."""
    if not target.exists():
        os.replace(folder, target)
        _fsync_dir(target.parent)
        return
    old = _temporary(target.parent, f"old-{target.name}")
    with _claimed(old):
        os.replace(target, old)
        try:
            os.replace(folder, target)
        except BaseException:
            os.replace(old, target)
            raise
        _fsync_dir(target.parent)
        shutil.rmtree(old, ignore_errors=True)


def _write_pointer(directory: Path, name: str) -> None:
    tmp = _temporary(directory, "latest")
    with _claimed(tmp):
        try:
            _write_bytes(tmp, f"{name}\n".encode())
            os.replace(tmp, directory / LATEST_FILE)
        finally:
            tmp.unlink(missing_ok=True)
    _fsync_dir(directory)


def _prune(directory: Path, keep: int | None, current: Path) -> None:
    """Remove stale ``.tmp-*`` entries and all but the ``keep`` newest step folders."""
    doomed: list[Path] = []
    for entry in directory.iterdir():
        if entry.name.startswith(_TMP_PREFIX) and _is_stale(entry.name):
            doomed.append(entry)
    if keep is not None:
        folders = list_checkpoints(directory)
        newest = {p.name for p in folders[-keep:]}
        for folder in folders:
            if folder.name not in newest and folder.name != current.name:
                # Rename first so that a kill during rmtree leaves a .tmp-* folder, not a
                # half-deleted step folder that looks like a corrupt checkpoint.
                moved = _temporary(directory, f"prune-{folder.name}")
                try:
                    os.replace(folder, moved)
                except OSError as err:
                    warnings.warn(f"could not remove old checkpoint {folder}: {err}", stacklevel=3)
                    continue
                doomed.append(moved)
    for entry in doomed:
        try:
            _remove(entry)
        except OSError as err:
            warnings.warn(f"could not remove {entry}: {err}", stacklevel=3)


def save_checkpoint(
    directory: str | os.PathLike[str], step: int, state: dict[Any, Any], keep: int | None = 2
) -> Path:
    """Save ``state`` as ``directory/step-{step:08d}`` atomically and point ``latest`` to it.

    ``directory`` is created if needed. Saving a step that exists already replaces it. Afterwards
    the ``keep`` highest-numbered step folders are kept (plus the one just written, always) and
    older ones deleted, as are ``.tmp-*`` leftovers of killed writers; ``keep=None`` keeps all.
    Returns the new checkpoint folder.

    Atomicity: the files are written into a ``.tmp-*`` sibling folder and fsynced,
    ``MANIFEST.json`` is written last, and the folder is then renamed into place -- an atomic
    operation on POSIX, so readers only ever see complete folders. The ``latest`` pointer is
    replaced (also by an atomic rename) only after that, so it always names a complete folder.

    Raises ``TypeError`` (before writing anything) when ``state`` holds something that cannot be
    saved, and ``ValueError`` for a negative ``step`` or a ``keep`` below 1.
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise UserInputError(f"step must be a non-negative int, got {step!r}")
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
        raise UserInputError(f"keep must be a positive int or None, got {keep!r}")
    if not isinstance(state, dict):
        raise InputTypeError(f"state must be a dict, got {type(state).__qualname__}")
    encoder = _Encoder()
    document = {"format_version": FORMAT_VERSION, "state": encoder.encode(state, "state")}
    state_json = (json.dumps(document, allow_nan=True) + "\n").encode("utf-8")

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = _step_name(step)
    target = directory / name
    tmp = _temporary(directory, name)
    with _claimed(tmp):
        try:
            tmp.mkdir()
            save_file(encoder.tensors, tmp / STATE_TENSORS, metadata={"format": "pt"})
            _fsync_file(tmp / STATE_TENSORS)
            _write_bytes(tmp / STATE_JSON, state_json)
            manifest = {
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "step": step,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "files": {file: _describe(tmp / file) for file in _DATA_FILES},
            }
            _write_manifest(tmp, manifest)
            _fsync_dir(tmp)
            _install(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    _write_pointer(directory, name)
    _prune(directory, keep, current=target)
    return target


def _is_checkpoint_folder(path: Path) -> bool:
    if (path / LATEST_FILE).exists() or list_checkpoints(path):
        return False  # a checkpoint directory
    return (
        _STEP_RE.fullmatch(path.name) is not None
        or path.name.startswith(_TMP_PREFIX)
        or any((path / file).exists() for file in (MANIFEST_FILE, *_DATA_FILES))
    )


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> tuple[int, dict[Any, Any]]:
    """Load ``(step, state)`` from a checkpoint folder, or from the folder ``path/latest`` names.

    Tensors are placed on ``map_location`` (CPU by default). Everything is verified first: the
    manifest, the format version, the size and sha256 of each file, the JSON, and that every
    tensor reference resolves; any problem raises :class:`CheckpointError` saying what is wrong
    and which checkpoints remain to resume from. Nothing damaged is ever returned.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: does not exist")
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a directory; expected a checkpoint folder or directory")
    if _is_checkpoint_folder(path):
        folder = path
    else:
        found = latest_checkpoint(path)
        if found is None:
            raise CheckpointError(
                f"{path}: no checkpoint found (no '{LATEST_FILE}' pointer, no step-* folders, "
                f"no {MANIFEST_FILE})"
            )
        folder = found
    return _load_folder(folder, torch.device(map_location))


def _load_folder(folder: Path, device: torch.device) -> tuple[int, dict[Any, Any]]:
    def fail(problem: str, advice: str | None = None) -> CheckpointError:
        if advice is None:
            advice = f"delete it or resume from an earlier checkpoint: {_others(folder)}"
        return CheckpointError(f"checkpoint {folder}: {problem}; {advice}")

    if folder.name.startswith(_TMP_PREFIX):
        raise fail(
            f"partial checkpoint: {folder.name} is the temporary folder of a write that never "
            "finished (it was not renamed into place); the write was interrupted"
        )
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise fail(f"partial checkpoint: {MANIFEST_FILE} missing; the write was interrupted")
    try:
        manifest = json.loads(manifest_path.read_bytes())
    except (ValueError, OSError) as err:
        raise fail(f"{MANIFEST_FILE} is not valid JSON ({err})") from None
    if not isinstance(manifest, dict):
        raise fail(f"{MANIFEST_FILE} is not a JSON object")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
            raise fail(
                f"format version {version} is newer than this bayeshead reads ({FORMAT_VERSION})",
                "load it with the bayeshead version that wrote it, or upgrade bayeshead",
            )
        raise fail(f"unknown format version {version!r} (this bayeshead reads {FORMAT_VERSION})")
    step = manifest.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise fail(f"{MANIFEST_FILE} has no valid step (got {step!r})")
    match = _STEP_RE.fullmatch(folder.name)
    if match and int(match.group(1)) != step:
        raise fail(
            f"the folder name says step {int(match.group(1))} but {MANIFEST_FILE} says {step}"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or any(file not in files for file in _DATA_FILES):
        raise fail(f"{MANIFEST_FILE} does not list {' and '.join(_DATA_FILES)}")
    for file, entry in files.items():
        if not isinstance(file, str) or Path(file).name != file or file in ("", ".", ".."):
            raise fail(f"{MANIFEST_FILE} lists an invalid file name {file!r}")
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("size"), int)
            or not isinstance(entry.get("sha256"), str)
        ):
            raise fail(f"{MANIFEST_FILE} has no valid size and sha256 for {file}")
        file_path = folder / file
        if not file_path.is_file():
            raise fail(f"{file} is listed in {MANIFEST_FILE} but missing")
        size = file_path.stat().st_size
        if size != entry["size"]:
            raise fail(
                f"{file} has {size} bytes but {MANIFEST_FILE} says {entry['size']} "
                "(truncated or overwritten)"
            )
        digest = _sha256(file_path)
        if digest != entry["sha256"]:
            raise fail(
                f"{file} is corrupt: sha256 mismatch (expected {entry['sha256']}, actual {digest})"
            )

    try:
        tensors = load_file(folder / STATE_TENSORS, device=str(device))
    except Exception as err:  # safetensors raises its own error types
        raise fail(f"{STATE_TENSORS} cannot be read ({err})") from None
    try:
        document = json.loads((folder / STATE_JSON).read_bytes())
    except ValueError as err:
        raise fail(f"{STATE_JSON} is not valid JSON ({err})") from None
    if (
        not isinstance(document, dict)
        or document.get("format_version") != FORMAT_VERSION
        or "state" not in document
    ):
        raise fail(f"{STATE_JSON} is not a format-{FORMAT_VERSION} state document")
    used: set[str] = set()
    try:
        state = _decode(document["state"], tensors, used, "state")
    except _Malformed as err:
        raise fail(f"{STATE_JSON}: {err}") from None
    if not isinstance(state, dict):
        raise fail(f"{STATE_JSON}: the state is a {type(state).__name__}, not a dict")
    unused = sorted(set(tensors) - used)
    if unused:
        raise fail(f"{STATE_TENSORS} holds tensors that {STATE_JSON} never references: {unused}")
    return step, state
