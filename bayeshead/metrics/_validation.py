"""Input checks shared by the metric functions.

Every check converts its input to a detached float64 tensor and raises an error that says what
was received, what was expected and how to fix it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bayeshead.errors import InputTypeError, UserInputError

#: Largest accepted deviation of a row of probabilities from summing to one (and of the
#: ``logsumexp`` of a row of log-probabilities from zero).
SUM_TOLERANCE = 1e-3

__all__ = [
    "SUM_TOLERANCE",
    "check_probs",
    "check_log_probs",
    "check_predictions",
    "check_targets",
    "check_scores",
    "check_samples",
    "check_n_bins",
]


def _check_tensor(value: object, name: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise InputTypeError(
            f"{name} must be a torch.Tensor, got {type(value).__name__}; "
            f"convert it with torch.as_tensor({name})"
        )
    return value


def _check_float_matrix(value: object, name: str) -> Tensor:
    tensor = _check_tensor(value, name)
    if not tensor.is_floating_point():
        raise InputTypeError(f"{name} must be a floating-point tensor, got dtype {tensor.dtype}")
    if tensor.dim() != 2:
        raise UserInputError(
            f"{name} must have shape (N, C) (examples x classes), got shape {tuple(tensor.shape)}"
        )
    if tensor.shape[0] == 0 or tensor.shape[1] == 0:
        raise UserInputError(
            f"{name} is empty (shape {tuple(tensor.shape)}); metrics need at least one example "
            "and one class"
        )
    tensor = tensor.detach().to(torch.float64)
    nan = torch.isnan(tensor)
    if nan.any():
        rows = nan.any(dim=1).nonzero().flatten()
        raise UserInputError(
            f"{name} contains NaN in {rows.numel()} of {tensor.shape[0]} rows (first: row "
            f"{int(rows[0])}); remove or fix those examples before computing metrics"
        )
    return tensor


def check_probs(probs: object, name: str = "probs") -> Tensor:
    """``probs`` (N, C) as float64: finite, non-negative, rows summing to 1 within 1e-3."""
    tensor = _check_float_matrix(probs, name)
    if (tensor < 0).any() or torch.isinf(tensor).any():
        bad = ((tensor < 0) | torch.isinf(tensor)).any(dim=1).nonzero().flatten()
        raise UserInputError(
            f"{name} must hold probabilities in [0, 1], but row {int(bad[0])} has "
            f"{tensor[bad[0]].tolist()[:8]}; if these are logits, pass "
            "torch.softmax(logits, dim=-1)"
        )
    error = (tensor.sum(dim=1) - 1.0).abs()
    worst = int(error.argmax())
    if float(error[worst]) > SUM_TOLERANCE:
        raise UserInputError(
            f"each row of {name} must sum to 1 (within {SUM_TOLERANCE}), but row {worst} sums "
            f"to {float(tensor[worst].sum()):.6g}; normalise with probs / probs.sum(-1, "
            "keepdim=True), or pass torch.softmax(logits, dim=-1) if these are logits"
        )
    return tensor


def check_log_probs(log_probs: object, name: str = "log_probs") -> Tensor:
    """``log_probs`` (N, C) as float64: no NaN or +inf, each row's logsumexp within 1e-3 of 0."""
    tensor = _check_float_matrix(log_probs, name)
    if (tensor == float("inf")).any():
        raise UserInputError(f"{name} contains +inf; log-probabilities must be <= 0")
    error = torch.logsumexp(tensor, dim=1).abs()
    worst = int(error.argmax())
    if not float(error[worst]) <= SUM_TOLERANCE:
        raise UserInputError(
            f"each row of {name} must be normalised (logsumexp within {SUM_TOLERANCE} of 0), "
            f"but row {worst} has logsumexp {float(torch.logsumexp(tensor[worst], 0)):.6g}; "
            "pass torch.log_softmax(logits, dim=-1)"
        )
    return tensor


def check_predictions(probs: object, log_probs: object) -> tuple[Tensor, Tensor | None]:
    """Probabilities and, when given, log-probabilities as float64.

    At least one of the two is required; probabilities are ``exp(log_probs)`` when only the
    log-probabilities are given. When both are given they must agree within 1e-3.
    """
    if probs is None and log_probs is None:
        raise UserInputError("pass probs (N, C), log_probs (N, C), or both; got neither")
    lp = None if log_probs is None else check_log_probs(log_probs)
    if probs is None:
        assert lp is not None
        return lp.exp(), lp
    p = check_probs(probs)
    if lp is not None:
        if lp.shape != p.shape:
            raise UserInputError(
                f"probs and log_probs must have the same shape, got {tuple(p.shape)} and "
                f"{tuple(lp.shape)}"
            )
        gap = float((lp.exp() - p).abs().max())
        if gap > SUM_TOLERANCE:
            raise UserInputError(
                f"probs and exp(log_probs) differ by up to {gap:.3g} (> {SUM_TOLERANCE}); "
                "pass the log of the same distribution"
            )
    return p, lp


def check_targets(targets: object, n: int, num_classes: int, name: str = "targets") -> Tensor:
    """Class indices (N,) as int64, each in [0, num_classes)."""
    tensor = _check_tensor(targets, name)
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise InputTypeError(
            f"{name} must hold integer class indices (int64), got dtype {tensor.dtype}; "
            f"use {name}.long() (and argmax first if they are one-hot)"
        )
    if tensor.dim() != 1:
        raise UserInputError(
            f"{name} must have shape (N,) (one class index per example), got shape "
            f"{tuple(tensor.shape)}"
        )
    if tensor.shape[0] != n:
        raise UserInputError(
            f"{name} has {tensor.shape[0]} entries but the predictions have {n} rows; pass one "
            "target per example"
        )
    tensor = tensor.detach().long()
    if n and (int(tensor.min()) < 0 or int(tensor.max()) >= num_classes):
        bad = int(tensor[(tensor < 0) | (tensor >= num_classes)][0])
        raise UserInputError(
            f"{name} must lie in [0, {num_classes}) for {num_classes} classes, found {bad}; "
            "check the label mapping or the number of prediction columns"
        )
    return tensor


def check_scores(scores: object, name: str) -> Tensor:
    """A 1-D, non-empty score tensor without NaN, as float64 (infinities are allowed)."""
    tensor = _check_tensor(scores, name)
    if tensor.dim() != 1:
        raise UserInputError(
            f"{name} must be 1-D (one score per example), got shape {tuple(tensor.shape)}"
        )
    if tensor.numel() == 0:
        raise UserInputError(f"{name} is empty; pass at least one score")
    if tensor.is_complex() or tensor.dtype == torch.bool:
        raise InputTypeError(f"{name} must be real-valued, got dtype {tensor.dtype}")
    tensor = tensor.detach().to(torch.float64)
    nan = torch.isnan(tensor)
    if nan.any():
        raise UserInputError(
            f"{name} contains {int(nan.sum())} NaN of {tensor.numel()} (first at index "
            f"{int(nan.nonzero()[0])}); fix or drop those examples"
        )
    return tensor


def check_samples(samples: object, n: int, num_classes: int, name: str) -> Tensor:
    """Per-sample probabilities (S, N, C) as float64, each (sample, example) row summing to 1."""
    tensor = _check_tensor(samples, name)
    if tensor.dim() != 3 or tuple(tensor.shape[1:]) != (n, num_classes) or tensor.shape[0] == 0:
        raise UserInputError(
            f"{name} must have shape (S, {n}, {num_classes}) (posterior samples x examples x "
            f"classes) with S >= 1, got shape {tuple(tensor.shape)}"
        )
    flat = check_probs(tensor.reshape(-1, num_classes), name=f"{name} (reshaped to (S*N, C))")
    return flat.reshape(tensor.shape)


def check_n_bins(n_bins: object) -> int:
    """A positive integer number of bins."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise UserInputError(f"n_bins must be a positive integer, got {n_bins!r}")
    return n_bins
