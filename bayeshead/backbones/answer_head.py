"""Answer-token rows of a causal LM's output layer, to start a C-way head at the LM's own scores.

For multiple-choice QA a causal LM scores answer c by the next-token logit of its answer token
t_c (" A", " B", ... or " true" / " false") at the prompt's last token:

    z_c = w_{t_c}ᵀ h_last (+ b_{t_c}),

where h_last is the final (normed) hidden state of the prompt's last real token and w_t, b_t are
row t of the LM head (``model.get_output_embeddings()``). BLoB (Wang et al., NeurIPS 2024) and
Laplace-LoRA (Yang et al., ICLR 2024) classify with exactly these C logits. Copying the C rows
w_{t_c} (and b_{t_c}) into a C-way head on ``last_token`` features therefore gives, at
initialisation, head logits equal to the LM's answer-token logits.

* :func:`answer_token_ids`: t_c for each answer string (the last token of its tokenization, as
  BLoB does, since sentencepiece tokenizers may prepend a bare "▁");
* :func:`answer_head_rows`: (W, b) = (rows t_c of the output embedding (C, d), bias rows or None).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from bayeshead.errors import InputTypeError, UserInputError

__all__ = ["answer_token_ids", "answer_head_rows"]


def _check_answers(answers: Sequence[str]) -> list[str]:
    """The answers as a list of strings; refuses a bare string and an empty list."""
    if isinstance(answers, str):
        raise InputTypeError(
            f"answers must be a sequence of strings (one per class), got the single string {answers!r}; "
            "wrap it in a list, e.g. [' A', ' B', ' C', ' D']"
        )
    answers = list(answers)
    if not answers:
        raise UserInputError(
            "answers is empty: expected one answer string per class, e.g. [' A', ' B'] or [' true', ' false']"
        )
    bad = [i for i, a in enumerate(answers) if not isinstance(a, str)]
    if bad:
        raise InputTypeError(
            f"answers must be strings; items {bad[:10]} are {type(answers[bad[0]]).__name__} "
            f"(got {answers!r}); pass the answer texts, e.g. [' A', ' B']"
        )
    return answers


def _is_bare_prefix(tokenizer: Any, token_id: int) -> bool:
    """True when ``token_id`` decodes to whitespace only (sentencepiece's lone "▁", GPT-2's "Ġ")."""
    return tokenizer.decode([token_id]).strip() == ""


def _last_token_id(tokenizer: Any, answer: str) -> int:
    """The last token id of ``answer`` tokenized without special tokens (warns on multi-token answers)."""
    ids = list(tokenizer(answer, add_special_tokens=False)["input_ids"])
    if not ids:
        raise UserInputError(
            f"answer {answer!r} gives no token (tokenized without special tokens: {ids}); "
            "expected a non-empty answer text such as ' A' or ' true'; fix the answer string"
        )
    if not all(_is_bare_prefix(tokenizer, i) for i in ids[:-1]):
        pieces = tokenizer.convert_ids_to_tokens(ids)
        warnings.warn(
            f"answer {answer!r} tokenizes to {len(ids)} tokens {pieces}; only the last one "
            f"({pieces[-1]!r}) is scored, which is not the LM's next-token choice for this answer. "
            "Prefer single-token answers such as ' A' or ' true'.",
            stacklevel=3,
        )
    return int(ids[-1])


def answer_token_ids(tokenizer: Any, answers: Sequence[str]) -> list[int]:
    """Token id t_c of each answer: the LAST token of ``tokenizer(answer, add_special_tokens=False)``
    (as BLoB does, so a bare "▁" that sentencepiece tokenizers prepend is skipped).

    Raises ``ValueError`` when an answer gives no token or when two answers share an id (the head
    could not tell those classes apart)."""
    answers = _check_answers(answers)
    ids = [_last_token_id(tokenizer, a) for a in answers]
    first: dict[int, int] = {}
    for i, token in enumerate(ids):
        if token in first:
            j = first[token]
            raise UserInputError(
                f"answers {answers[j]!r} (class {j}) and {answers[i]!r} (class {i}) map to the same token id "
                f"{token} ({tokenizer.convert_ids_to_tokens([token])[0]!r}); got ids {ids} for {answers}. "
                "Expected one distinct token per class: use answers that tokenize differently "
                "(mind the leading space, e.g. ' A' vs ' B', and case with lower-casing tokenizers)."
            )
        first[token] = i
    return ids


def _output_embeddings(model: nn.Module) -> nn.Module:
    """``model.get_output_embeddings()``, or a clear error when the model has no LM head."""
    getter = getattr(model, "get_output_embeddings", None)
    head = getter() if callable(getter) else None
    if head is None or not isinstance(getattr(head, "weight", None), Tensor):
        raise UserInputError(
            f"{type(model).__name__} has no output embeddings (LM head), so there are no answer-token rows "
            "to initialise the head from. Expected a causal LM (e.g. LlamaForCausalLM): load the backbone "
            "with backbone.model_class=causal_lm (AutoModelForCausalLM), or do not call init_head_from_answers."
        )
    return head


def answer_head_rows(
    model: nn.Module, tokenizer: Any, answers: Sequence[str]
) -> tuple[Tensor, Tensor | None]:
    """Rows (W, b) of the LM head for the answers' tokens t_c, so that z_c = w_{t_c}ᵀ h_last (+ b_{t_c})
    are the LM's next-token logits of the answers.

    Returns W = ``model.get_output_embeddings().weight[ids]`` as a detached float32 (C, d) clone and
    the matching bias rows (C,) as float32, or ``None`` when the LM head has no bias."""
    ids = answer_token_ids(tokenizer, answers)
    head = _output_embeddings(model)
    weight = head.weight
    if not weight.is_floating_point():
        raise InputTypeError(
            f"the LM head weight is {weight.dtype}, not floating point (a quantized LM head?); expected float "
            "rows. Keep the LM head unquantized (bitsandbytes skips it by default)."
        )
    if max(ids) >= weight.shape[0]:
        raise UserInputError(
            f"answer token ids {ids} exceed the LM head's {weight.shape[0]} rows; the tokenizer does not "
            "match the model: load both from the same checkpoint"
        )
    index = torch.tensor(ids, dtype=torch.long, device=weight.device)
    rows = weight.detach().index_select(0, index).float().clone()
    bias = getattr(head, "bias", None)
    bias_rows = (
        bias.detach().index_select(0, index).float().clone() if isinstance(bias, Tensor) else None
    )
    return rows, bias_rows
