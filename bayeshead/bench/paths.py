"""Paths the bench code writes: every name that comes from data (a task, a method) becomes a
single safe path component, and every path is checked to stay inside its output folder."""

from __future__ import annotations

import re
from pathlib import Path

from bayeshead.errors import UserInputError

__all__ = ["safe_name", "inside"]


def safe_name(name: str) -> str:
    """One file-name-safe path component for ``name``: runs of characters outside
    ``[A-Za-z0-9_.+-]`` become ``_``, and names that would still mean a folder (``.``, ``..``,
    empty) or hide a file (a leading ``.``) are prefixed with ``_``. ``/tmp/x`` -> ``tmp_x``."""
    cleaned = re.sub(r"[^A-Za-z0-9_.+-]+", "_", str(name)).strip("_")
    if not cleaned or cleaned.startswith("."):
        cleaned = "_" + cleaned
    return cleaned


def inside(root: Path, path: Path) -> Path:
    """``path`` if it lies inside ``root`` (after resolving ``..`` and links); otherwise a
    :class:`~bayeshead.errors.UserInputError` naming both."""
    resolved_root = Path(root).resolve()
    resolved = Path(path).resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise UserInputError(
            f"refusing to write {path}: it is outside the output folder {root}; a run's task or method "
            "name must not be a path"
        )
    return path
