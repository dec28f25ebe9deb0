"""``save_pretrained`` / ``from_pretrained`` for :class:`~bayeshead.model.BayesianModel`.

A saved model is a directory:

* ``config.json``      -- the :class:`~bayeshead.config.ExperimentConfig` (loadable by ``load_config``);
* ``metadata.json``    -- schema version, package versions, head shape, adapted modules, and the
  name, shape and dtype of every saved tensor;
* ``head.safetensors`` -- the head's parameters and buffers;
* ``adapters.safetensors`` -- the adapter parameters (only when the model has adapters);
* ``method.safetensors`` -- a whole-model method's own tensors (ensemble members, a fitted
  adapter posterior), only when it has some.

The frozen backbone weights are not copied: they are reloaded from ``config.backbone``.
Nothing is pickled. Loading refuses, with a message naming the problem, an unknown schema
version, a missing file, and a missing, unexpected or wrongly shaped tensor.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from bayeshead.config import ExperimentConfig
from bayeshead.errors import UserInputError

if TYPE_CHECKING:
    from bayeshead.backbones.base import Backbone
    from bayeshead.model import BayesianModel

__all__ = [
    "SCHEMA_VERSION",
    "save_model",
    "load_model",
    "read_saved",
    "load_model_state",
    "load_method_state",
    "package_versions",
    "SerializationError",
]

SCHEMA_VERSION = 1
CONFIG_FILE = "config.json"
METADATA_FILE = "metadata.json"
HEAD_FILE = "head.safetensors"
ADAPTER_FILE = "adapters.safetensors"
METHOD_FILE = "method.safetensors"

_PACKAGES = ("bayeshead", "torch", "transformers", "geoopt", "pydantic", "safetensors")


class SerializationError(UserInputError):
    """A saved model directory that cannot be loaded."""


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _write_atomic(path: Path, write: Any) -> None:
    """Write through a temporary file in the same directory, then rename over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; saved models are ordinary files
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=False)
            handle.write("\n")

    _write_atomic(path, write)


def _tensors(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def _describe(tensors: dict[str, Tensor]) -> dict[str, dict[str, Any]]:
    return {k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")} for k, v in tensors.items()}


def _adapter_state(model: BayesianModel) -> dict[str, Tensor]:
    from bayeshead.adapters import adapter_state_dict

    return adapter_state_dict(model.backbone.model)


def save_model(model: BayesianModel, directory: str | Path, extra: dict[str, Tensor] | None = None) -> Path:
    """Write ``model`` to ``directory`` (created if needed), with a method's ``extra`` tensors in
    ``method.safetensors``; returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = model.config.model_copy(update={"head": model.head.config})
    head_tensors = _tensors(model.head.state_dict())
    adapter_tensors = _tensors(_adapter_state(model)) if model.adapted_modules else {}
    method_tensors = _tensors(extra or {})
    files = {HEAD_FILE: _describe(head_tensors)}
    if method_tensors:
        files[METHOD_FILE] = _describe(method_tensors)
        _write_atomic(
            directory / METHOD_FILE, lambda tmp: save_file(method_tensors, tmp, metadata={"format": "pt"})
        )
    elif (directory / METHOD_FILE).exists():
        (directory / METHOD_FILE).unlink()
    _write_atomic(directory / HEAD_FILE, lambda tmp: save_file(head_tensors, tmp, metadata={"format": "pt"}))
    if adapter_tensors:
        files[ADAPTER_FILE] = _describe(adapter_tensors)
        _write_atomic(
            directory / ADAPTER_FILE, lambda tmp: save_file(adapter_tensors, tmp, metadata={"format": "pt"})
        )
    elif (directory / ADAPTER_FILE).exists():
        (directory / ADAPTER_FILE).unlink()  # a stale file from an earlier save would mislead
    _write_json(directory / CONFIG_FILE, config.model_dump(mode="json"))
    _write_json(
        directory / METADATA_FILE,
        {
            "format": "bayeshead",
            "schema_version": SCHEMA_VERSION,
            "versions": package_versions(),
            "head": {
                "kind": model.head.config.kind,
                "class": f"{type(model.head).__module__}.{type(model.head).__qualname__}",
                "in_features": model.head.in_features,
                "num_outputs": model.head.num_outputs,
            },
            "method": {"kind": model.config.method.kind},
            "adapted_modules": list(model.adapted_modules),
            "files": files,
        },
    )
    return directory


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SerializationError(f"{path.parent}: missing {path.name}; is this a directory written by save_pretrained?")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise SerializationError(f"{path}: not valid JSON ({err}); the file is corrupt or truncated") from None
    if not isinstance(data, dict):
        raise SerializationError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _load_tensors(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise SerializationError(f"{path.parent}: missing {path.name} (listed in {METADATA_FILE})")
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise SerializationError(f"{path}: cannot read safetensors ({err}); the file is corrupt or truncated") from None


def check_state(
    found: dict[str, Tensor], expected: dict[str, Tensor], where: Path
) -> None:
    """Refuse missing, unexpected or wrongly shaped tensors, naming each."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = [
        f"{k}: file {tuple(found[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(found) & set(expected))
        if found[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors {missing}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected}")
    if wrong:
        problems.append("wrong shapes: " + "; ".join(wrong))
    if problems:
        raise SerializationError(f"{where}: " + ", ".join(problems))


def read_saved(directory: str | Path) -> tuple[ExperimentConfig, dict[str, Any]]:
    """The experiment config and the metadata of a saved folder (schema version checked)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise SerializationError(f"{directory} is not a directory")
    meta = _read_json(directory / METADATA_FILE)
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise SerializationError(
            f"{directory}: unknown schema_version {version!r}; this bayeshead "
            f"({package_versions()['bayeshead']}) reads schema version {SCHEMA_VERSION}. "
            "Load it with the bayeshead version that wrote it (see metadata.json 'versions')."
        )
    config = ExperimentConfig.model_validate(_read_json(directory / CONFIG_FILE))
    return config, meta


def load_model_state(model: BayesianModel, directory: str | Path, meta: dict[str, Any]) -> None:
    """Copy the saved head and adapter tensors into ``model`` (built from the saved config)."""
    directory = Path(directory)
    head_meta = meta.get("head", {})
    if model.head.in_features != head_meta.get("in_features"):
        raise SerializationError(
            f"{directory}: the head was saved for {head_meta.get('in_features')} features but the "
            f"backbone gives {model.head.in_features}; load it with the backbone it was trained on"
        )
    head_state = _load_tensors(directory / HEAD_FILE)
    check_state(head_state, model.head.state_dict(), directory / HEAD_FILE)
    model.head.load_state_dict(head_state)
    if meta.get("adapted_modules"):
        if sorted(meta["adapted_modules"]) != sorted(model.adapted_modules):
            raise SerializationError(
                f"{directory}: saved adapters on {meta['adapted_modules']} but the config adapts "
                f"{model.adapted_modules}"
            )
        adapter_state = _load_tensors(directory / ADAPTER_FILE)
        check_state(adapter_state, _adapter_state(model), directory / ADAPTER_FILE)
        with torch.no_grad():
            params = dict(model.backbone.model.named_parameters())
            buffers = dict(model.backbone.model.named_buffers())
            for name, value in adapter_state.items():
                target = params.get(name, buffers.get(name))
                assert target is not None  # guaranteed by check_state
                target.copy_(value)


def load_method_state(directory: str | Path, meta: dict[str, Any]) -> dict[str, Tensor]:
    """A method's own tensors (``method.safetensors``; empty when the method saved none)."""
    directory = Path(directory)
    if METHOD_FILE not in meta.get("files", {}):
        return {}
    return _load_tensors(directory / METHOD_FILE)


def load_model(directory: str | Path, backbone: Backbone | None = None) -> BayesianModel:
    """Rebuild the model saved in ``directory``. Pass ``backbone`` to reuse a loaded one
    (it must be the same base model the head was trained on). Folders written by a whole-model
    method load with :func:`bayeshead.methods.load_method`."""
    from bayeshead.model import BayesianModel

    directory = Path(directory)
    config, meta = read_saved(directory)
    if config.method.kind != "single":
        raise SerializationError(
            f"{directory} was saved by the whole-model method {config.method.kind!r}; a BayesianModel alone "
            "would drop its state. Load it with bayeshead.methods.load_method(directory)"
        )
    head_meta = meta.get("head", {})
    model = BayesianModel.from_config(config, num_outputs=int(head_meta["num_outputs"]), backbone=backbone)
    load_model_state(model, directory, meta)
    model.eval()
    return model
