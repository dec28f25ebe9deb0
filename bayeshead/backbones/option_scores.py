"""The LM's own score of each answer option, as one more per-option feature.

For a multiple-choice question the option sequences (:mod:`bayeshead.backbones.option_groups`)
share a beginning, the question (``"Question: …\\nAnswer:"``; for WinoGrande the sentence up to
the blank), and differ after it. Let L_q be the length of the longest token prefix all options of
question q share; option k's *continuation* is its tokens t_j from j = L_q on (at least its last
token), and its score is their mean log-probability under the causal LM,

    s_{q,k} = (1/|C_k|) · Σ_{j ∈ C_k} log softmax(W h_{j−1} (+ b))[t_j],

with h the final-normed last hidden states (the ones the LM head multiplies), W the LM head over
the whole vocabulary (Gemma's final logit soft-capping applied when the model has one). This is
the length-normalised cloze score of lm-evaluation-harness (per token rather than per character;
:mod:`bayeshead.tasks.cloze` computes the same zero-shot from separately encoded context and
continuation), computed here from the hidden states the features already come from, so it costs
one LM-head product per continuation token and no second pass, and it moves with the adapters.

A per-option head on [h_last, s] whose weight on s starts at 1 (and 0 elsewhere) predicts
exactly the LM's zero-shot cloze distribution softmax_k(s_{q,k}) before any training; training
then corrects it (and re-scales s: the head's weight on s is a learned temperature).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bayeshead.errors import InputTypeError, UserInputError

__all__ = ["continuation_positions", "continuation_scores"]


def continuation_positions(input_ids: Tensor, mask: Tensor, counts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """For every continuation token of every option row: its row (M,), its position in the padded
    batch (M,) and the position of the token before it (M,). Continuations start after the longest
    token prefix a question's options share (at least the last token of each option is scored)."""
    ids, real = input_ids.cpu(), mask.cpu() > 0
    rows, at, before = [], [], []
    start = 0
    for n in counts.tolist():
        group = range(start, start + int(n))
        seqs = [ids[i][real[i]] for i in group]
        places = [real[i].nonzero().flatten() for i in group]
        shortest = min(len(s) for s in seqs)
        common = 0
        while common < shortest and all(bool(s[common] == seqs[0][common]) for s in seqs[1:]):
            common += 1
        for i, seq, pos in zip(group, seqs, places, strict=True):
            first = min(max(common, 1), len(seq) - 1)
            if first < 1:
                raise UserInputError(
                    f"option row {i} has {len(seq)} token(s); an option needs at least 2 to be scored by the LM"
                )
            rows.append(torch.full((len(seq) - first,), i, dtype=torch.long))
            at.append(pos[first:])
            before.append(pos[first - 1 : len(seq) - 1])
        start += int(n)
    return torch.cat(rows), torch.cat(at), torch.cat(before)


def _lm_logits(model: nn.Module, hidden: Tensor) -> Tensor:
    head = model.get_output_embeddings()
    logits = head(hidden).float()
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def continuation_scores(model: nn.Module, hidden: Tensor, input_ids: Tensor, mask: Tensor, counts: Tensor) -> Tensor:
    """s_{q,k} of every option row, (N,) float32 (float64 for a float64 model): the mean
    log-probability of the option's continuation tokens (see the module docstring). ``hidden``
    (N, T, d) are the LM's last hidden states, ``input_ids`` and ``mask`` (N, T) the tokenized
    options, ``counts`` (Q,) the options of each question."""
    getter = getattr(model, "get_output_embeddings", None)
    if not callable(getter) or getter() is None:
        raise InputTypeError(
            f"option LM scores need a causal LM with an LM head (get_output_embeddings), got {type(model).__name__}; "
            "set backbone.model_class=causal_lm or backbone.option_lm_score=false"
        )
    rows, at, before = (t.to(hidden.device) for t in continuation_positions(input_ids, mask, counts))
    logits = _lm_logits(model, hidden[rows, before])
    if hidden.dtype == torch.float64:
        logits = logits.double()
    token_logp = torch.log_softmax(logits, dim=-1).gather(-1, input_ids[rows, at][:, None])[:, 0]
    n = hidden.shape[0]
    total = torch.zeros(n, dtype=token_logp.dtype, device=hidden.device).index_add(0, rows, token_logp)
    count = torch.zeros(n, dtype=token_logp.dtype, device=hidden.device).index_add(0, rows, torch.ones_like(token_logp))
    return total / count
