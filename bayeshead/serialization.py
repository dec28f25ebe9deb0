"""``save_pretrained`` / ``from_pretrained`` for :class:`~bayeshead.model.BayesianModel`.

A saved model is a directory:

* ``config.json``      -- the :class:`~bayeshead.config.ExperimentConfig` (loadable by ``load_config``);
* ``metadata.json``    -- schema version, package versions, head shape, adapted modules, and the
  name, shape and dtype of every saved tensor;
* ``head.safetensors`` -- the head's parameters and buffers;
* ``adapters.safetensors`` -- the adapter parameters (only when the model has adapters);
* ``method.safetensors`` -- a whole-model method's own tensors (ensemble members, a fitted
  adapter posterior), only when it has some.

* ``MANIFEST.json``    -- written last: the size and sha256 of every file above.

The frozen backbone weights are not copied: they are reloaded from ``config.backbone`` (with
safetensors only, and with ``trust_remote_code`` as the *caller* passes it, never as the folder
says). Nothing is pickled. The folder is written atomically (temporary sibling, manifest last,
swapped into place). Loading refuses, with a message naming the file and the field, a manifest
mismatch (an edited or corrupt file), an unknown schema version, a missing file, metadata that
disagrees with the config, NaN or infinite tensors, and a missing, unexpected or wrongly shaped
tensor. Folders without a manifest (older bayeshead) load with a :class:`LegacyFormatWarning`
naming the one-line command that converts them.
"""

from __future__ import annotations

import json
import platform
import warnings
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from bayeshead.config import ExperimentConfig
from bayeshead.errors import BayesheadError, UserInputError

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
    "LegacyFormatWarning",
    "check_finite",
]

SCHEMA_VERSION = 1
CONFIG_FILE = "config.json"
METADATA_FILE = "metadata.json"
HEAD_FILE = "head.safetensors"
ADAPTER_FILE = "adapters.safetensors"
METHOD_FILE = "method.safetensors"
MANIFEST_FORMAT = "bayeshead-model"
CONVERT_COMMAND = (
    "python -c \"import sys; from bayeshead.methods import load_method; "
    "load_method(sys.argv[1]).save_pretrained(sys.argv[1])\" {directory}"
)

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


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=False)
        handle.write("\n")


def _tensors(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def _describe(tensors: dict[str, Tensor]) -> dict[str, dict[str, Any]]:
    return {k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")} for k, v in tensors.items()}


def _adapter_state(model: BayesianModel) -> dict[str, Tensor]:
    from bayeshead.adapters import adapter_state_dict

    return adapter_state_dict(model.backbone.model)


def save_model(model: BayesianModel, directory: str | Path, extra: dict[str, Tensor] | None = None) -> Path:
    """Write ``model`` to ``directory``, with a method's ``extra`` tensors in ``method.safetensors``;
    returns the directory.

    The whole folder is written atomically (:func:`bayeshead.atomic_folder.write_folder`): the
    files go into a temporary sibling, ``MANIFEST.json`` (size and sha256 of every file) is
    written last, and the folder is then swapped into place. A full disk, a read-only folder or a
    kill leaves the previous model at ``directory`` untouched; nothing half-written is ever
    there. Tensors that are not finite are refused before anything is written."""
    from bayeshead.atomic_folder import write_folder

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise SerializationError(f"{directory} exists and is a file; save_pretrained needs a folder path")
    config = model.config.model_copy(update={"head": model.head.config})
    head_tensors = _tensors(model.head.state_dict())
    adapter_tensors = _tensors(_adapter_state(model)) if model.adapted_modules else {}
    method_tensors = _tensors(extra or {})
    for file, tensors in ((HEAD_FILE, head_tensors), (ADAPTER_FILE, adapter_tensors), (METHOD_FILE, method_tensors)):
        check_finite(tensors, Path(file))
    files = {HEAD_FILE: _describe(head_tensors)}
    if method_tensors:
        files[METHOD_FILE] = _describe(method_tensors)
    if adapter_tensors:
        files[ADAPTER_FILE] = _describe(adapter_tensors)
    metadata = {
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
        **_scaler_metadata(model),
    }

    def fill(tmp: Path) -> None:
        save_file(head_tensors, str(tmp / HEAD_FILE), metadata={"format": "pt"})
        if adapter_tensors:
            save_file(adapter_tensors, str(tmp / ADAPTER_FILE), metadata={"format": "pt"})
        if method_tensors:
            save_file(method_tensors, str(tmp / METHOD_FILE), metadata={"format": "pt"})
        _write_json(tmp / CONFIG_FILE, config.model_dump(mode="json"))
        _write_json(tmp / METADATA_FILE, metadata)

    try:
        return write_folder(directory, fill, {"format": MANIFEST_FORMAT, "schema_version": SCHEMA_VERSION})
    except OSError as err:
        raise SerializationError(
            f"cannot save the model to {directory}: {err.strerror or err}; the previous contents (if any) are "
            "unchanged. Free space, fix the folder's permissions or choose another output folder"
        ) from None


def check_finite(tensors: dict[str, Tensor], where: Path) -> None:
    """Refuse NaN or infinite values in floating-point tensors, naming the file and the tensor."""
    bad = [
        name
        for name, value in tensors.items()
        if (value.is_floating_point() or value.is_complex()) and not bool(torch.isfinite(value).all())
    ]
    if bad:
        raise SerializationError(
            f"{where}: tensors {bad[:5]} hold NaN or infinite values; the model diverged or the file is corrupt"
        )


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
    """Read a safetensors file; refuse NaN or infinite values."""
    if not path.is_file():
        raise SerializationError(f"{path.parent}: missing {path.name} (listed in {METADATA_FILE})")
    try:
        tensors = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise SerializationError(f"{path}: cannot read safetensors ({err}); the file is corrupt or truncated") from None
    check_finite(tensors, path)
    return tensors


def _check_listed(tensors: dict[str, Tensor], meta: dict[str, Any], path: Path) -> None:
    """Refuse tensors whose names, shapes or dtypes differ from what ``metadata.json`` lists."""
    listed = meta.get("files", {}).get(path.name)
    if isinstance(listed, dict) and listed != _describe(tensors):
        raise SerializationError(
            f"{path}: its tensors (names, shapes, dtypes) differ from field 'files.{path.name}' of "
            f"{METADATA_FILE}; the folder mixes files of different saves, save the model again"
        )


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


def read_saved(
    directory: str | Path, trust_remote_code: bool = False
) -> tuple[ExperimentConfig, dict[str, Any]]:
    """The experiment config and the metadata of a saved folder, verified: ``MANIFEST.json``
    (size and sha256 of every file), the schema version, and that ``metadata.json`` agrees with
    ``config.json`` (head kind, method kind, num_outputs, adapted modules, tensor files).

    ``trust_remote_code`` is never taken from the folder: the returned config carries the
    caller's value (default False), so loading cannot run code the folder points at. A folder
    without a manifest (written before bayeshead checked them) loads with a warning that gives
    the one-line command converting it."""
    from bayeshead.atomic_folder import (
        MANIFEST_FILE,
        FolderError,
        interrupted_leftovers,
        verify_folder,
    )

    directory = Path(directory)
    if not directory.is_dir():
        leftovers = interrupted_leftovers(directory)
        hint = (
            f"; a save was interrupted and the previous model is in {leftovers[-1]}: rename it to {directory}"
            if leftovers
            else ""
        )
        raise SerializationError(f"{directory} is not a directory{hint}")
    if directory.name.startswith(".tmp-"):
        raise SerializationError(
            f"{directory} is the temporary folder of a save that never finished (it was not swapped into "
            "place); load the model folder itself, and delete this one"
        )
    if (directory / MANIFEST_FILE).exists():
        try:
            verify_folder(directory, MANIFEST_FORMAT)
        except FolderError as err:
            raise SerializationError(str(err)) from None
    else:
        warnings.warn(
            f"{directory} has no {MANIFEST_FILE} (saved by an older bayeshead): its files cannot be checked "
            f"for damage or edits. Convert it once with: {CONVERT_COMMAND.format(directory=directory)}",
            LegacyFormatWarning,
            stacklevel=3,
        )
    meta = _read_json(directory / METADATA_FILE)
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise SerializationError(
            f"{directory}: unknown schema_version {version!r}; this bayeshead "
            f"({package_versions()['bayeshead']}) reads schema version {SCHEMA_VERSION}. "
            "Load it with the bayeshead version that wrote it (see metadata.json 'versions')."
        )
    from pydantic import ValidationError

    raw = _read_json(directory / CONFIG_FILE)
    try:
        config = ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()[:3]
        )
        raise SerializationError(f"{directory / CONFIG_FILE}: invalid config ({problems})") from None
    config.backbone.trust_remote_code = bool(trust_remote_code)
    _check_agreement(directory, config, meta)
    return config, meta


class LegacyFormatWarning(BayesheadError, UserWarning):
    """A saved model folder without ``MANIFEST.json``, loaded unverified (a warning; under the
    package's one root so that ``-W error`` turns it into a catchable :class:`BayesheadError`)."""


def _check_agreement(directory: Path, config: ExperimentConfig, meta: dict[str, Any]) -> None:
    """Refuse a ``metadata.json`` that disagrees with ``config.json``, naming the field."""

    def refuse(field: str, found: Any, expected: Any, source: str) -> SerializationError:
        return SerializationError(
            f"{directory / METADATA_FILE}: field {field!r} is {found!r} but {source} says {expected!r}; "
            "the files come from different saves or were edited, save the model again"
        )

    head = meta.get("head")
    if not isinstance(head, dict):
        raise SerializationError(f"{directory / METADATA_FILE}: field 'head' is missing or not an object")
    if head.get("kind") != config.head.kind:
        raise refuse("head.kind", head.get("kind"), config.head.kind, f"{CONFIG_FILE} head.kind")
    method = meta.get("method", {"kind": "single"})
    if not isinstance(method, dict) or method.get("kind") != config.method.kind:
        found = method.get("kind") if isinstance(method, dict) else method
        raise refuse("method.kind", found, config.method.kind, f"{CONFIG_FILE} method.kind")
    num_outputs = head.get("num_outputs")
    if isinstance(num_outputs, bool) or not isinstance(num_outputs, int) or num_outputs < 1:
        raise refuse("head.num_outputs", num_outputs, "a positive integer", "the format")
    configured = getattr(config.head, "num_outputs", None)
    if isinstance(configured, int) and configured != num_outputs:
        raise refuse("head.num_outputs", num_outputs, configured, f"{CONFIG_FILE} head.num_outputs")
    files = meta.get("files")
    if not isinstance(files, dict) or HEAD_FILE not in files or set(files) - {HEAD_FILE, ADAPTER_FILE, METHOD_FILE}:
        raise refuse("files", sorted(files) if isinstance(files, dict) else files, [HEAD_FILE, "..."], "the format")
    adapted = meta.get("adapted_modules", [])
    if not isinstance(adapted, list):
        raise refuse("adapted_modules", adapted, "a list", "the format")
    if bool(adapted) != (ADAPTER_FILE in files):
        raise refuse("adapted_modules", adapted, f"{ADAPTER_FILE} listed in 'files'", "field 'files'")
    if bool(adapted) != (config.adapter is not None):
        expected = f"adapter {config.adapter.kind!r}" if config.adapter is not None else "no adapter"
        raise refuse("adapted_modules", adapted, expected, f"{CONFIG_FILE} adapter")


def load_model_state(model: BayesianModel, directory: str | Path, meta: dict[str, Any]) -> None:
    """Copy the saved head and adapter tensors into ``model`` (built from the saved config)."""
    directory = Path(directory)
    head_meta = meta.get("head", {})
    if model.head.in_features != head_meta.get("in_features"):
        raise SerializationError(
            f"{directory}: the head was saved for {head_meta.get('in_features')} features but the "
            f"backbone gives {model.head.in_features}; load it with the backbone it was trained on"
        )
    saved = _load_tensors(directory / HEAD_FILE)
    head_state = model.head.upgrade_state_dict(saved)  # defaults for tensors older saves lack
    check_state(head_state, model.head.state_dict(), directory / HEAD_FILE)
    _check_listed(saved, meta, directory / HEAD_FILE)
    model.head.load_state_dict(head_state)
    _load_scaler(model, directory, meta)
    if sorted(meta.get("adapted_modules") or []) != sorted(model.adapted_modules):
        raise SerializationError(
            f"{directory / METADATA_FILE}: field 'adapted_modules' is {meta.get('adapted_modules')} but "
            f"{CONFIG_FILE} adapts {list(model.adapted_modules)}; the files come from different saves or were edited"
        )
    if meta.get("adapted_modules"):
        adapter_state = _load_tensors(directory / ADAPTER_FILE)
        check_state(adapter_state, _adapter_state(model), directory / ADAPTER_FILE)
        _check_listed(adapter_state, meta, directory / ADAPTER_FILE)
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
    tensors = _load_tensors(directory / METHOD_FILE)
    _check_listed(tensors, meta, directory / METHOD_FILE)
    return tensors


def load_model(
    directory: str | Path, backbone: Backbone | None = None, trust_remote_code: bool = False
) -> BayesianModel:
    """Rebuild the model saved in ``directory``. Pass ``backbone`` to reuse a loaded one
    (it must be the same base model the head was trained on). Folders written by a whole-model
    method load with :func:`bayeshead.methods.load_method`. ``trust_remote_code`` (never read
    from the folder) allows the backbone's own Python code to run while it loads."""
    from bayeshead.model import BayesianModel

    directory = Path(directory)
    config, meta = read_saved(directory, trust_remote_code=trust_remote_code)
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


def _scaler_metadata(model: BayesianModel) -> dict[str, Any]:
    """``{"target_scaler": {"mean": [...], "std": [...]}}`` for a model trained on standardised
    regression targets (JSON floats round-trip float64 exactly); ``{}`` otherwise."""
    scaler = getattr(model, "target_scaler", None)
    if scaler is None:
        return {}
    return {"target_scaler": {"mean": scaler.mean.tolist(), "std": scaler.std.tolist()}}


def _load_scaler(model: BayesianModel, directory: Path, meta: dict[str, Any]) -> None:
    """Restore the target standardisation saved by :func:`_scaler_metadata` (none: no scaler)."""
    saved = meta.get("target_scaler")
    if saved is None:
        model.target_scaler = None
        return
    from bayeshead.data.scaling import TargetScaler

    try:
        scaler = TargetScaler(
            mean=torch.tensor(saved["mean"], dtype=torch.float64), std=torch.tensor(saved["std"], dtype=torch.float64)
        )
    except (KeyError, TypeError, ValueError) as err:
        raise SerializationError(f"{directory / METADATA_FILE}: invalid field 'target_scaler' ({err})") from None
    if scaler.num_outputs != model.head.num_outputs:
        raise SerializationError(
            f"{directory / METADATA_FILE}: field 'target_scaler' has {scaler.num_outputs} output(s) but the head "
            f"has {model.head.num_outputs}; the folder is inconsistent"
        )
    model.target_scaler = scaler
