"""Multiple-choice inputs through any backbone: option groups in, padded option features out.

In the per-option formulation (:mod:`bayeshead.tasks.options`) one example is a *group* of texts,
one per answer option (``("Question: …\\nAnswer: Paris", "Question: …\\nAnswer: Rome", …)``).
A batch of Q groups with n_1 … n_Q options is tokenized flat (N = Σ n_q sequences, every option its
own row, so the backbone, its adapters, prefix caches and dropout see ordinary sequences), and the
option counts travel with the tokenized batch under :data:`OPTION_COUNTS`. The backbone's flat
features (N, d) are then laid out per question as

    H ∈ R^{Q × K × d},   H[q, k] = h_{q,k} for k < n_q,   H[q, k] = NaN for n_q ≤ k < K,

K = max n_q of the batch. A whole NaN row marks an option the question does not have (a
per-option head reads the counts back with :func:`unpad_option_features`), so every trainer step,
whole-model method (MC dropout, ensembles, BLoB, TFB) and evaluation loop that passes features
from the backbone to the head carries multiple-choice data unchanged. Padding is never scored:
the heads drop the NaN rows before any arithmetic, and gradients reach only the real rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from bayeshead.errors import InputTypeError, UserInputError

__all__ = [
    "OPTION_COUNTS",
    "check_option_groups",
    "flatten_groups",
    "is_option_groups",
    "option_batch",
    "pad_option_features",
    "unpad_option_features",
]

OPTION_COUNTS = "option_counts"
"""Key of a tokenized batch that holds the option count of each question, (Q,) int64."""


def is_option_groups(texts: Sequence[Any]) -> bool:
    """Whether ``texts`` is a list of option groups (tuples or lists of strings), not of strings."""
    return bool(texts) and not isinstance(texts, str) and all(isinstance(t, (tuple, list)) for t in texts)


def check_option_groups(groups: Sequence[Any], where: str) -> list[tuple[str, ...]]:
    """Validate option groups: each a tuple/list of at least 2 strings; return them as tuples."""
    out = []
    for q, group in enumerate(groups):
        if not isinstance(group, (tuple, list)):
            raise InputTypeError(
                f"{where}: example {q} is a {type(group).__name__}, but the other examples are option groups; "
                "give every example as a tuple of its option texts"
            )
        if len(group) < 2:
            raise UserInputError(f"{where}: example {q} has {len(group)} option(s); a question needs at least 2")
        bad = [k for k, text in enumerate(group) if not isinstance(text, str)]
        if bad:
            raise InputTypeError(
                f"{where}: option {bad[0]} of example {q} is a {type(group[bad[0]]).__name__}, expected a string"
            )
        out.append(tuple(group))
    return out


def flatten_groups(groups: Sequence[Sequence[str]]) -> tuple[list[str], Tensor]:
    """All option texts flat (question order) and the option count of each question (Q,)."""
    checked = check_option_groups(groups, "option groups")
    return [text for group in checked for text in group], torch.tensor([len(g) for g in checked], dtype=torch.long)


def pad_option_features(flat: Tensor, counts: Tensor) -> Tensor:
    """Flat option features (N, d) → (Q, K, d), K = max n_q, with NaN rows where a question has no
    option. Differentiable in the real rows."""
    counts = counts.to(device=flat.device, dtype=torch.long)
    if flat.dim() != 2 or int(counts.sum()) != flat.shape[0]:
        raise UserInputError(
            f"pad_option_features: {flat.shape[0] if flat.dim() else 0} feature rows for option counts summing to "
            f"{int(counts.sum())}; give one feature row per option"
        )
    k = int(counts.max())
    question = torch.repeat_interleave(torch.arange(counts.numel(), device=flat.device), counts)
    position = torch.arange(flat.shape[0], device=flat.device) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts
    )
    padded = flat.new_full((counts.numel(), k, flat.shape[1]), float("nan"))
    return padded.index_put((question, position), flat)


def unpad_option_features(padded: Tensor, where: str) -> tuple[Tensor, Tensor]:
    """(Q, K, d) features with NaN rows after each question's options → the flat real rows (N, d)
    and the counts (Q,). Refused: NaN inside a row that has real numbers, a gap before the last real
    option, or a question with fewer than 2 options (what a diverged backbone would produce)."""
    if padded.dim() != 3:
        raise UserInputError(
            f"{where}: expected option features of shape (questions, options, features), got {tuple(padded.shape)}; "
            "feed multiple-choice data as option groups (one tuple of option texts per question)"
        )
    nan = torch.isnan(padded)
    absent = nan.all(-1)
    if bool((nan.any(-1) & ~absent).any()):
        q = int((nan.any(-1) & ~absent).any(-1).nonzero()[0])
        raise UserInputError(
            f"{where}: the features of question {q} contain NaN inside an option's row; the backbone diverged "
            "(check its dtype and learning rate)"
        )
    counts = (~absent).sum(-1)
    positions = torch.arange(padded.shape[1], device=padded.device)
    if bool(((~absent) != (positions < counts[:, None])).any()):
        q = int(((~absent) != (positions < counts[:, None])).any(-1).nonzero()[0])
        raise UserInputError(
            f"{where}: question {q} has a missing (NaN) option before a present one; padding must come after "
            "a question's options (the backbone gave NaN features for a real option?)"
        )
    if bool((counts < 2).any()):
        q = int((counts < 2).nonzero()[0])
        raise UserInputError(f"{where}: question {q} has {int(counts[q])} option(s) with finite features; at least 2 are needed")
    return padded[~absent], counts


def option_batch(batch: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], Tensor | None]:
    """A tokenized batch without its option counts, and the counts (None for ordinary batches)."""
    if OPTION_COUNTS not in batch:
        return dict(batch), None
    rest = {k: v for k, v in batch.items() if k != OPTION_COUNTS}
    return rest, batch[OPTION_COUNTS]
