"""Per-option (multiple-choice) scoring: segment operations and the predictive over a question's
own options.

In the per-option formulation every answer option k of question q is its own sequence with
features h_{q,k}; a head gives it one scalar logit z_{q,k}, and the probability of option k is the
softmax over that question's options only,

    p(k | q) = exp(z_{q,k}) / Σ_{j < n_q} exp(z_{q,j}),

where n_q (the option count) varies between questions (WinoGrande 2, BoolQ 2, ARC 3-5, OBQA 4).
A batch is stored flat: ``N = Σ_q n_q`` option rows in question order, with ``counts`` (Q,) the
option count of each question. Segment operations (:func:`segment_log_softmax`,
:func:`segment_logsumexp`) pad to (Q, max n_q) with −inf internally and return flat or per-question
results, so no caller ever sees padding classes or masks.

:class:`OptionPredictive` is the predictive of such a batch: flat log-probabilities (N,) (and
optionally S per-sample ones (S, N)) with the counts; its NLL, entropy and mutual information are
per question. :meth:`OptionPredictive.padded` turns it into a
:class:`~bayeshead.types.CategoricalPredictive` over K columns with probability exactly 0 on the
columns a question does not have (so accuracy, NLL, Brier score and ECE are unchanged), for the
metrics that take one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from bayeshead.errors import InputTypeError, UserInputError
from bayeshead.types import CategoricalPredictive, Predictive

__all__ = [
    "OptionPredictive",
    "check_counts",
    "check_option_targets",
    "option_positions",
    "pad_segments",
    "question_index",
    "segment_log_softmax",
    "segment_logsumexp",
    "unpad_segments",
]


def check_counts(counts: Tensor | list[int], total: int | None, where: str) -> Tensor:
    """Validate option counts (Q,): integers ≥ 1 summing to ``total`` (the number of option rows,
    when given); return them as int64."""
    if not isinstance(counts, Tensor):
        counts = torch.as_tensor(counts)
    if counts.is_floating_point() or counts.is_complex() or counts.dtype == torch.bool:
        raise InputTypeError(f"{where}: counts must be integer option counts per question, got dtype {counts.dtype}")
    if counts.dim() != 1 or counts.numel() == 0:
        raise UserInputError(f"{where}: counts must have shape (questions,) with at least one question, got {tuple(counts.shape)}")
    counts = counts.long()
    if int(counts.min()) < 1:
        raise UserInputError(
            f"{where}: every question needs at least one option, got counts {counts.tolist()[:10]}; drop empty questions"
        )
    if total is not None and int(counts.sum()) != total:
        raise UserInputError(
            f"{where}: counts sum to {int(counts.sum())} but there are {total} option rows; give one count per "
            "question, in the order of the rows (all options of question 0, then question 1, ...)"
        )
    return counts


def check_option_targets(targets: Tensor, counts: Tensor, where: str) -> Tensor:
    """Validate the correct-option index of every question, (Q,) with 0 ≤ y_q < n_q; return int64."""
    if not isinstance(targets, Tensor):
        raise InputTypeError(f"{where}: targets must be a torch.Tensor of option indices, got {type(targets).__name__}")
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise InputTypeError(f"{where}: targets must be integer option indices, got dtype {targets.dtype}")
    if targets.shape != counts.shape:
        raise UserInputError(
            f"{where}: expected one target per question, shape {tuple(counts.shape)}, got {tuple(targets.shape)}"
        )
    targets = targets.long().to(counts.device)
    bad = (targets < 0) | (targets >= counts)
    if bool(bad.any()):
        q = int(bad.nonzero()[0])
        raise UserInputError(
            f"{where}: question {q} has {int(counts[q])} options but its target is {int(targets[q])}; "
            "targets index the question's own options (0-based)"
        )
    return targets


def question_index(counts: Tensor) -> Tensor:
    """The question of every option row, (N,): ``[0]*n_0 + [1]*n_1 + ...``."""
    return torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)


def option_positions(counts: Tensor) -> Tensor:
    """The position k of every option row within its question, (N,): ``0..n_0-1, 0..n_1-1, ...``."""
    starts = torch.cumsum(counts, 0) - counts
    return torch.arange(int(counts.sum()), device=counts.device) - torch.repeat_interleave(starts, counts)


def pad_segments(flat: Tensor, counts: Tensor, fill: float = -math.inf) -> Tensor:
    """(…, N) option values → (…, Q, K) with K = max n_q, missing positions set to ``fill``."""
    q, k = question_index(counts), option_positions(counts)
    shape = (*flat.shape[:-1], counts.numel(), int(counts.max()))
    out = flat.new_full(shape, fill)
    out[..., q, k] = flat
    return out


def unpad_segments(padded: Tensor, counts: Tensor) -> Tensor:
    """(…, Q, K) → (…, N): the entries of the positions each question has, in row order."""
    return padded[..., question_index(counts), option_positions(counts)]


def segment_logsumexp(flat: Tensor, counts: Tensor) -> Tensor:
    """log Σ_{k < n_q} exp(x_{q,k}) per question: (…, N) → (…, Q)."""
    return torch.logsumexp(pad_segments(flat, counts), dim=-1)


def segment_log_softmax(flat: Tensor, counts: Tensor) -> Tensor:
    """x_{q,k} − log Σ_{j < n_q} exp(x_{q,j}) for every option row: (…, N) → (…, N)."""
    return flat - torch.repeat_interleave(segment_logsumexp(flat, counts), counts, dim=-1)


@dataclass
class OptionPredictive(Predictive):
    """Per-question categorical predictive over a variable number of options.

    ``log_probs`` (N,): log p(k | q) of every option row (flat, question order); ``counts`` (Q,);
    ``samples`` (S, N): optional per-sample probabilities (Monte Carlo), for the mutual information.
    """

    log_probs: Tensor
    counts: Tensor
    samples: Tensor | None = None

    def __post_init__(self) -> None:
        if self.log_probs.dim() != 1:
            raise UserInputError(f"log_probs must be flat (option rows,), got shape {tuple(self.log_probs.shape)}")
        self.counts = check_counts(self.counts, self.log_probs.shape[0], "OptionPredictive").to(self.log_probs.device)
        if self.samples is not None and (self.samples.dim() != 2 or self.samples.shape[1] != self.log_probs.shape[0]):
            raise UserInputError(
                f"samples must be (S, {self.log_probs.shape[0]}) per-sample probabilities, got {tuple(self.samples.shape)}"
            )

    @classmethod
    def from_logits(cls, logits: Tensor, counts: Tensor) -> OptionPredictive:
        """Segment softmax of flat logits (N,)."""
        return cls(log_probs=segment_log_softmax(logits, counts.to(logits.device)), counts=counts)

    @classmethod
    def from_sample_logits(cls, logits: Tensor, counts: Tensor) -> OptionPredictive:
        """(1/S)·Σ_s segment-softmax(z_s) for S samples of flat logits (S, N), in log space:
        log p = logsumexp_s log p_s − log S; the per-sample probabilities are kept."""
        if logits.dim() != 2 or logits.shape[0] == 0:
            raise UserInputError(f"expected sample logits of shape (S >= 1, option rows), got {tuple(logits.shape)}")
        log_p = segment_log_softmax(logits, counts.to(logits.device))
        log_mean = torch.logsumexp(log_p, dim=0) - math.log(logits.shape[0])
        return cls(log_probs=log_mean, counts=counts, samples=log_p.exp())

    @property
    def probs(self) -> Tensor:
        """p(k | q) of every option row, (N,)."""
        return self.log_probs.exp()

    @property
    def num_questions(self) -> int:
        return int(self.counts.numel())

    def per_question(self) -> list[Tensor]:
        """The probability vector of each question (lengths n_q)."""
        return list(torch.split(self.probs, self.counts.tolist()))

    def question_sums(self) -> Tensor:
        """Σ_k p(k | q) per question (1 up to rounding), (Q,)."""
        return torch.zeros(self.num_questions, dtype=self.probs.dtype, device=self.probs.device).index_add(
            0, question_index(self.counts), self.probs
        )

    def argmax(self) -> Tensor:
        """The most probable option of each question, (Q,)."""
        return pad_segments(self.log_probs, self.counts).argmax(-1)

    def nll(self, targets: Tensor) -> Tensor:
        """−log p(y_q | q), (Q,)."""
        y = check_option_targets(targets, self.counts, "OptionPredictive.nll")
        starts = torch.cumsum(self.counts, 0) - self.counts
        return -self.log_probs[starts + y]

    def _segment_sum(self, flat: Tensor) -> Tensor:
        out = torch.zeros((*flat.shape[:-1], self.num_questions), dtype=flat.dtype, device=flat.device)
        return out.index_add(-1, question_index(self.counts), flat)

    def entropy(self) -> Tensor:
        """−Σ_k p_k log p_k per question, (Q,)."""
        return -self._segment_sum(self.probs * self.log_probs.clamp_min(torch.finfo(self.log_probs.dtype).min))

    def mutual_information(self) -> Tensor:
        """H[E_s p_s] − E_s H[p_s] per question (BALD); zero without samples."""
        if self.samples is None:
            return torch.zeros(self.num_questions, dtype=self.log_probs.dtype, device=self.log_probs.device)
        tiny = torch.finfo(self.samples.dtype).tiny
        sample_entropy = -self._segment_sum(self.samples * self.samples.clamp_min(tiny).log()).mean(0)
        return (self.entropy() - sample_entropy).clamp_min(0.0)

    def padded(self, num_classes: int | None = None) -> CategoricalPredictive:
        """A :class:`CategoricalPredictive` (Q, K), K = ``num_classes`` (default max n_q), with
        probability 0 (log-probability −inf) on the positions a question lacks; samples likewise."""
        k_max = int(self.counts.max())
        k = k_max if num_classes is None else int(num_classes)
        if k < k_max:
            raise UserInputError(f"padded: a question has {k_max} options but num_classes={k}; give at least {k_max}")
        log_probs = pad_segments(self.log_probs, self.counts)
        probs = pad_segments(self.probs, self.counts, fill=0.0)
        samples = None if self.samples is None else pad_segments(self.samples, self.counts, fill=0.0)
        if k > k_max:
            extra = k - k_max
            log_probs = torch.nn.functional.pad(log_probs, (0, extra), value=-math.inf)
            probs = torch.nn.functional.pad(probs, (0, extra), value=0.0)
            samples = None if samples is None else torch.nn.functional.pad(samples, (0, extra), value=0.0)
        return CategoricalPredictive(probs=probs, log_probs=log_probs, samples=samples)

    @classmethod
    def cat(cls, parts: list[OptionPredictive]) -> OptionPredictive:
        """Concatenate consecutive batches; samples are kept when every part has as many."""
        if not parts:
            raise UserInputError("OptionPredictive.cat needs at least one predictive")
        counts = {None if p.samples is None else p.samples.shape[0] for p in parts}
        samples = None
        if len(counts) == 1 and None not in counts:
            samples = torch.cat([p.samples for p in parts], dim=1)  # type: ignore[misc]
        return cls(
            log_probs=torch.cat([p.log_probs for p in parts]),
            counts=torch.cat([p.counts for p in parts]),
            samples=samples,
        )

    def double(self) -> OptionPredictive:
        return OptionPredictive(
            log_probs=self.log_probs.double(),
            counts=self.counts,
            samples=None if self.samples is None else self.samples.double(),
        )

    def to(self, device: torch.device | str) -> OptionPredictive:
        return OptionPredictive(
            log_probs=self.log_probs.to(device),
            counts=self.counts.to(device),
            samples=None if self.samples is None else self.samples.to(device),
        )
