"""Zero-shot cloze scoring of the QA tasks by a causal LM (lm-evaluation-harness style).

Every option k of a question becomes a (context, continuation) pair, the LM gives its
log-likelihood LL_k = log p(continuation_k | context_k)
(:func:`~bayeshead.backbones.cloze.continuation_log_likelihoods`), and the option scores are
turned into a predictive over the question's own options. Pairs by template family:

* ARC, OpenBookQA, MMLU (``multiple_choice``): context ``"Question: <question>\\nAnswer:"``,
  continuation ``" <option>"`` (the option text after one space).
* BoolQ: context ``"Passage: <passage>\\nQuestion: <question>\\nAnswer:"`` (passage cut to
  :data:`~bayeshead.tasks.prompts.BOOLQ_PASSAGE_CHARS` characters), continuation ``" true"`` /
  ``" false"`` (the record's choices).
* WinoGrande: lm-evaluation-harness's *partial* scoring. The context is the sentence up to the
  ``_`` blank with the option put in, the continuation the rest of the sentence after the blank,
  exactly as it appears (leading space included), which is the same text for every option: the
  options are compared by how well they predict the rest of the sentence::

      "The trophy doesn't fit into the suitcase because _ is too large."
      -> ("The trophy doesn't fit into the suitcase because the trophy", " is too large.")

  (lm-evaluation-harness writes ``" " + rest.strip()``; here the text is kept as it is, so a
  blank followed by ``'s`` or punctuation is scored on the sentence's own characters.)

The contexts match the per-option texts of :mod:`bayeshead.tasks.options` up to where the option
starts, so the zero-shot rows and the per-option heads see the same wording.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch

from bayeshead.backbones.cloze import continuation_log_likelihoods
from bayeshead.errors import InputTypeError, UserInputError
from bayeshead.heads.option_scoring import OptionPredictive
from bayeshead.tasks.prompts import BOOLQ_PASSAGE_CHARS, PROMPT_FAMILY
from bayeshead.tasks.records import QARecord

__all__ = [
    "BOOLQ_CLOZE_CONTEXT",
    "CLOZE_CONTEXT",
    "NORMALIZATIONS",
    "cloze_pairs",
    "cloze_predictive",
]

CLOZE_CONTEXT = "Question: {question}\nAnswer:"
BOOLQ_CLOZE_CONTEXT = "Passage: {passage}\nQuestion: {question}\nAnswer:"
NORMALIZATIONS = ("tokens", "none")
"""``tokens``: score LL_k / n_k (mean log-likelihood per continuation token); ``none``: LL_k."""

_WINOGRANDE = ("winogrande_s", "winogrande_m")
_BLANK = "_"


def _winogrande_pairs(record: QARecord) -> list[tuple[str, str]]:
    sentence = record.question
    blanks = sentence.count(_BLANK)
    if blanks != 1:
        raise UserInputError(
            f"{record.id}: a WinoGrande sentence needs exactly one '_' blank to put the option in, found "
            f"{blanks} in {sentence[:80]!r}"
        )
    where = sentence.index(_BLANK)
    rest = sentence[where + 1 :]
    if not rest.strip():
        raise UserInputError(
            f"{record.id}: the WinoGrande sentence {sentence[:80]!r} has no text after its '_' blank, so partial "
            "scoring has no continuation to score; the blank must be followed by the rest of the sentence"
        )
    return [(sentence[:where] + option, rest) for option in record.choices]


def cloze_pairs(task_name: str, record: QARecord) -> list[tuple[str, str]]:
    """The (context, continuation) pair of each option of ``record`` (task ``task_name``), in
    option order; see the module docstring for the templates."""
    family = PROMPT_FAMILY.get(task_name)
    if family is None:
        raise UserInputError(f"unknown task {task_name!r}; known tasks: {', '.join(sorted(PROMPT_FAMILY))}")
    if not isinstance(record, QARecord):
        raise InputTypeError(f"cloze_pairs needs a bayeshead.tasks.records.QARecord, got {type(record).__name__}")
    if task_name in _WINOGRANDE:
        return _winogrande_pairs(record)
    if family == "boolq":
        if record.passage is None:
            raise UserInputError(f"{record.id}: a BoolQ question needs a passage (QARecord.passage is None)")
        context = BOOLQ_CLOZE_CONTEXT.format(passage=record.passage[:BOOLQ_PASSAGE_CHARS], question=record.question)
    else:
        context = CLOZE_CONTEXT.format(question=record.question)
    return [(context, f" {option}") for option in record.choices]


def cloze_predictive(
    backbone: Any,
    task_name: str,
    records: Sequence[QARecord],
    *,
    normalize: Literal["tokens", "none"] = "tokens",
    batch_size: int = 8,
) -> OptionPredictive:
    """The zero-shot predictive of a causal LM over each question's own options.

    Option k of question q gets the score

        s_{q,k} = LL_{q,k} / n_{q,k}   (``normalize="tokens"``)   or   s_{q,k} = LL_{q,k}   (``"none"``),

    with LL the continuation log-likelihood and n its token count
    (:func:`~bayeshead.backbones.cloze.continuation_log_likelihoods`), and
    p(k | q) = exp(s_{q,k}) / Σ_{j < n_q} exp(s_{q,j}).

    The argmax (accuracy) is lm-evaluation-harness's ``acc`` for ``"none"`` and close to its
    length-normalised ``acc_norm`` for ``"tokens"`` (which divides by characters, not tokens). The
    probabilities are a modelling choice, not part of that protocol: with ``"none"`` they are the
    LM's joint probabilities of the continuations renormalised over the options; with ``"tokens"``
    they are a softmax of per-token averages, i.e. of the geometric-mean token probabilities, which
    is a tempered (flatter, for multi-token options) distribution. NLL, ECE and Brier scores of the
    zero-shot rows therefore depend on this choice while their accuracy barely does. For WinoGrande
    the continuation is the same text, hence the same n tokens, for all of a question's options, so
    both choices rank the options alike (same accuracy), but ``"tokens"`` is ``"none"`` at
    temperature n: its log-odds are those of ``"none"`` divided by n, i.e. much less confident.

    Args:
        backbone: a :class:`~bayeshead.backbones.huggingface.HuggingFaceBackbone` around a causal LM.
        task_name: a task of :data:`~bayeshead.tasks.prompts.PROMPT_FAMILY`.
        records: the questions, each with 1 or more options.
        normalize: ``"tokens"`` (default, the usual choice for ARC/OpenBookQA) or ``"none"``.
        batch_size: sequences per forward pass.

    Returns:
        An :class:`~bayeshead.heads.option_scoring.OptionPredictive` (float64) with the options of
        question 0, then question 1, ...
    """
    if normalize not in NORMALIZATIONS:
        raise UserInputError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    records = list(records)
    if not records:
        raise UserInputError(f"{task_name}: no questions to score; give at least one QARecord")
    pairs = [cloze_pairs(task_name, record) for record in records]
    counts = torch.tensor([len(p) for p in pairs], dtype=torch.int64)
    flat = [pair for question in pairs for pair in question]
    log_likelihoods, n_tokens = continuation_log_likelihoods(
        backbone, [c for c, _ in flat], [x for _, x in flat], batch_size=batch_size
    )
    scores = log_likelihoods / n_tokens.to(torch.float64) if normalize == "tokens" else log_likelihoods
    return OptionPredictive.from_logits(scores, counts)
