"""Write a whole folder atomically and verify it later: the machinery saved models share with
training checkpoints (:mod:`bayeshead.training.checkpoint`).

:func:`write_folder` calls ``fill(tmp)`` to write the files into a temporary sibling
``.tmp-<name>-<pid>-<hex>`` of the target, fsyncs them, writes ``MANIFEST.json`` (size and
sha256 of every file) last, then swaps the folder into place:

* on Linux with ``renameat2(RENAME_EXCHANGE)`` (ext4, xfs, btrfs, tmpfs) the new and the old
  folder trade names in one atomic step, so the target path always holds a complete folder;
* elsewhere the old folder is renamed away and the new one renamed in (two atomic renames; a
  kill between them leaves the old folder as ``.tmp-old-<name>-*``, which
  :func:`interrupted_leftovers` names so that an error can say where it went).

A writer killed earlier leaves only a ``.tmp-*`` folder, which readers never look at and the next
:func:`write_folder` into the same parent removes. :func:`verify_folder` checks a manifest.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bayeshead.errors import UserInputError
from bayeshead.training.checkpoint import (
    MANIFEST_FILE,
    _claimed,
    _fsync_dir,
    _fsync_file,
    _is_stale,
    _remove,
    _sha256,
    _temporary,
    _write_bytes,
)
from bayeshead.training.checkpoint import _install as _install_by_renames

__all__ = ["MANIFEST_FILE", "FolderError", "write_folder", "verify_folder", "exchange", "interrupted_leftovers"]

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


class FolderError(UserInputError):
    """A folder whose manifest is missing, malformed or does not match its files."""


def _renameat2() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return libc.renameat2
    except (OSError, AttributeError):
        return None


_RENAMEAT2 = _renameat2()


def exchange(a: Path, b: Path) -> bool:
    """Swap the names of ``a`` and ``b`` in one atomic step; False where the system cannot."""
    if _RENAMEAT2 is None:
        return False
    result = _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this file system cannot exchange
        return False
    raise OSError(err, f"cannot swap {a} and {b}: {os.strerror(err)}")


def _install(folder: Path, target: Path) -> None:
    """Put the complete ``folder`` at ``target``, replacing an existing folder there."""
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise UserInputError(f"{target} exists and is not a folder; choose another output path or remove it")
    if target.exists() and exchange(folder, target):
        shutil.rmtree(folder, ignore_errors=True)  # ``folder`` now holds the old contents
        _fsync_dir(target.parent)
    else:  # no target yet, or no atomic exchange here: the checkpoints' two renames
        _install_by_renames(folder, target)


def _prune_stale(parent: Path, name: str) -> None:
    for entry in parent.iterdir():
        if entry.name.startswith((f".tmp-{name}-", f".tmp-old-{name}-")) and _is_stale(entry.name):
            try:
                _remove(entry)
            except OSError:
                pass


def write_folder(target: str | os.PathLike[str], fill: Callable[[Path], None], manifest: dict[str, Any]) -> Path:
    """Write a folder at ``target`` atomically: ``fill(tmp)`` writes the data files into a
    temporary sibling, then ``MANIFEST.json`` (``manifest`` plus ``created`` and the size and
    sha256 of every file) is written last and the folder swapped into place. Returns ``target``."""
    target = Path(target).absolute()
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    _prune_stale(parent, target.name)
    tmp = _temporary(parent, target.name)
    with _claimed(tmp):
        try:
            tmp.mkdir()
            fill(tmp)
            files = sorted(p.name for p in tmp.iterdir() if p.is_file())
            for name in files:
                _fsync_file(tmp / name)
            document = {
                **manifest,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "files": {name: {"size": (tmp / name).stat().st_size, "sha256": _sha256(tmp / name)} for name in files},
            }
            _write_bytes(tmp / MANIFEST_FILE, (json.dumps(document, indent=2) + "\n").encode("utf-8"))
            _fsync_dir(tmp)
            _install(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def interrupted_leftovers(target: Path) -> list[Path]:
    """``.tmp-old-<name>-*`` siblings of ``target``: earlier contents of a folder whose save was
    killed between the two renames (only where the file system cannot exchange names)."""
    parent = Path(target).absolute().parent
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir() if p.name.startswith(f".tmp-old-{Path(target).name}-"))


def verify_folder(folder: Path, expected_format: str) -> dict[str, Any]:
    """Check ``folder/MANIFEST.json``: its format, and the size and sha256 of every listed file
    (files it does not list, e.g. a ``metrics.json`` added later, are not read). Returns the
    manifest; raises :class:`FolderError` naming the file and the problem."""
    path = folder / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_bytes())
    except (OSError, ValueError) as err:
        raise FolderError(f"{path}: cannot read the manifest ({err}); the folder is damaged, save it again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != expected_format:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise FolderError(f"{path}: format {found!r}, expected {expected_format!r}")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise FolderError(f"{path}: field 'files' must map file names to their size and sha256")
    for name, entry in files.items():
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", "..", MANIFEST_FILE):
            raise FolderError(f"{path}: field 'files' lists an invalid file name {name!r}")
        if not isinstance(entry, dict) or not isinstance(entry.get("size"), int) or not isinstance(entry.get("sha256"), str):
            raise FolderError(f"{path}: field 'files.{name}' needs an int 'size' and a str 'sha256'")
        file = folder / name
        if not file.is_file():
            raise FolderError(f"{file}: listed in {MANIFEST_FILE} but missing; the folder is damaged, save it again")
        size = file.stat().st_size
        if size != entry["size"]:
            raise FolderError(
                f"{file}: {size} bytes but {MANIFEST_FILE} says {entry['size']} (truncated or overwritten); save it again"
            )
        if _sha256(file) != entry["sha256"]:
            raise FolderError(
                f"{file}: sha256 differs from {MANIFEST_FILE} (the file was edited or is corrupt); "
                "restore it or save the model again"
            )
    return manifest
