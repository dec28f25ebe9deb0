"""Checks the CLI runs *before* any training starts, so that a user's mistake costs seconds, not
a training run: output and checkpoint folders, the device, the backbone path, the permission to
run a backbone's own code, the seed; and, once the model is built, ``max_length`` against the
model's positions (the rank against the layer sizes is checked while adapters are built).

Each problem is a :class:`~bayeshead.errors.UserInputError` (one line, exit 2 in the CLI).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bayeshead.errors import UserInputError
from bayeshead.seeding import seed_everything  # re-exported: the CLI seeds before building

if TYPE_CHECKING:
    from bayeshead.config import ExperimentConfig

__all__ = [
    "TRUST_REMOTE_CODE_HELP",
    "check_writable_folder",
    "check_trust_remote_code",
    "check_backbone",
    "check_positions",
    "seed_everything",
    "check_warmup",
]

TRUST_REMOTE_CODE_HELP = (
    "allow the backbone's own Python code (the auto_map modules in its config.json) to run when it "
    "is loaded; without it such a backbone is refused. Only for backbones whose code you trust: "
    "it runs with your permissions. Never read from a config file or a saved model folder"
)


def check_writable_folder(path: str | os.PathLike[str] | None, option: str) -> None:
    """Refuse an output folder that is an existing file, or whose nearest existing ancestor is
    not a writable folder."""
    if path is None:
        return
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise UserInputError(f"{option} {folder} is an existing file; give a folder path (new or existing)")
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise UserInputError(f"{option} {folder}: {probe} is a file, so the folder cannot be created")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserInputError(f"{option} {folder}: {probe} is not writable; choose a folder you can write to")


def check_trust_remote_code(config: ExperimentConfig, allowed: bool) -> None:
    """Apply ``--trust-remote-code``: a config asking for it without the flag is refused."""
    if config.backbone.trust_remote_code and not allowed:
        raise UserInputError(
            "the config sets backbone.trust_remote_code=true, which lets the backbone run its own Python code; "
            "bayeshead takes that permission only from the command line: add --trust-remote-code if you trust "
            "that code, or remove the setting"
        )
    config.backbone.trust_remote_code = bool(allowed)


def _looks_local(name: str) -> bool:
    return os.path.isabs(name) or name.startswith(("./", "../", "~", ".\\")) or name in (".", "..")


def check_backbone(config: ExperimentConfig) -> None:
    """Refuse an unusable device and a local backbone path that does not exist (hub names and
    packaged aliases are resolved when the backbone loads)."""
    from bayeshead.backbones.huggingface import resolve_device

    resolve_device(config.backbone.device, load_in_8bit=config.backbone.load_in_8bit)
    name = config.backbone.name_or_path
    if _looks_local(name) and not Path(name).expanduser().exists():
        raise UserInputError(
            f"backbone.name_or_path={name!r} is a path that does not exist; give an existing model folder, a "
            "hub name or a packaged alias (see `bayeshead list`)"
        )


def _positions(model: Any) -> int | None:
    config = getattr(getattr(model, "model", None), "config", None)
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_positions(backbone: Any, max_length: int) -> None:
    """Refuse ``backbone.max_length`` beyond the positions the loaded model has."""
    positions = _positions(backbone)
    if positions is not None and max_length > positions:
        raise UserInputError(
            f"backbone.max_length={max_length} but the model has {positions} positions; "
            f"set backbone.max_length to at most {positions}"
        )


def check_warmup(config: ExperimentConfig, n_train: int) -> None:
    """Warn when ``training.warmup_steps`` is at least the number of optimizer steps: the
    learning rate would never reach its configured value."""
    import math
    import warnings

    training = config.training
    steps = training.epochs * math.ceil(n_train / training.batch_size)
    if training.max_steps is not None:
        steps = min(steps, training.max_steps)
    if training.warmup_steps >= steps > 0:
        warnings.warn(
            f"training.warmup_steps={training.warmup_steps} but training runs {steps} steps, so the learning "
            f"rate never reaches optimizer.lr; lower warmup_steps below {steps}",
            UserWarning,
            stacklevel=2,
        )
