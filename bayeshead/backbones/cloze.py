"""Log-likelihood of a continuation given a context under a causal LM (zero-shot cloze scoring).

For a context c and a continuation x = (x_1, ..., x_n) (both encoded without special tokens,
the continuation with its leading space, e.g. ``" Paris"``), the score is

    log p(x | c) = Σ_{i=1..n} log softmax(z_{m+i-1})[x_i],

where the model reads the token sequence t = (bos?) + enc(c) + enc(x), m = len(bos?) + len(enc(c))
is the number of tokens before the continuation, z_j is the model's full-vocabulary logit vector
at position j (it predicts token j + 1) and the log-softmax is taken in float32 (float64 for a
float64 model); the sum is accumulated in float64. This follows the loglikelihood requests of
EleutherAI's lm-evaluation-harness:

* the context and the continuation are encoded separately, so the continuation's tokens are the
  same for every context (the boundary is never merged into one token);
* the tokenizer's BOS token is prepended when the tokenizer adds one by default (Llama), and not
  otherwise (GPT-2, Qwen2); an empty context with no BOS is replaced by the BOS or, failing that,
  the EOS token, so that the first continuation token is conditioned on something;
* the last token of t is only predicted, never read: the model input is t without its last token,
  at most ``backbone.max_length`` tokens. A longer input loses tokens from the LEFT of the context
  (the BOS token, when there is one, is kept at position 0; the continuation is never cut).

Sequences are batched with right padding and an attention mask; positions count real tokens
only, so a result does not depend on what it is batched with.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from bayeshead.errors import InputTypeError, UserInputError

__all__ = ["bos_prefix", "continuation_log_likelihoods"]


def _check_backbone(backbone: Any) -> None:
    from bayeshead.backbones.huggingface import HuggingFaceBackbone

    if not isinstance(backbone, HuggingFaceBackbone):
        raise InputTypeError(
            "continuation_log_likelihoods needs a bayeshead.backbones.huggingface.HuggingFaceBackbone around "
            f"a causal LM, got {type(backbone).__name__}; load one with "
            "HuggingFaceBackbone.from_pretrained(name, model_class='causal_lm')"
        )
    if not backbone.is_causal_lm:
        raise InputTypeError(
            "continuation_log_likelihoods needs a causal LM (AutoModelForCausalLM, with an LM head), but the "
            f"backbone wraps {type(backbone.model).__name__}, which has none; load the model with "
            "model_class='causal_lm' (backbone.model_class=causal_lm)"
        )


def _check_texts(texts: Sequence[str], what: str) -> list[str]:
    if isinstance(texts, str):
        raise InputTypeError(f"{what} must be a sequence of strings, got a single str; wrap it in a list")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise InputTypeError(f"{what} must be strings; items {bad[:10]} are {type(texts[bad[0]]).__name__}")
    return texts


def _encode(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]


def bos_prefix(tokenizer: Any) -> list[int]:
    """The token ids the tokenizer puts before a text by default (Llama: ``[bos]``; GPT-2,
    Qwen2: ``[]``), read off ``tokenizer("a")`` against ``tokenizer("a", add_special_tokens=False)``."""
    with_special = list(tokenizer("a")["input_ids"])
    plain = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    if not plain:
        return []
    for start in range(len(with_special) - len(plain) + 1):
        if with_special[start : start + len(plain)] == plain:
            return with_special[:start]
    return []


def _empty_context_token(tokenizer: Any) -> int | None:
    """lm-evaluation-harness's prefix token for an empty context: BOS, else EOS."""
    for name in ("bos_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, int):
            return value
    return None


def _sequence(
    index: int, prefix: list[int], context: list[int], continuation: list[int], max_length: int, tokenizer: Any,
    texts: tuple[str, str],
) -> tuple[list[int], int]:
    """The token sequence t (prefix + kept context + continuation) and the start m of the continuation."""
    if not continuation:
        raise UserInputError(
            f"continuation {index} ({texts[1]!r}) encodes to no tokens, so it has no likelihood to score; "
            "give a non-empty continuation (with its leading space, e.g. ' Paris')"
        )
    if not prefix and not context:
        token = _empty_context_token(tokenizer)
        if token is None:
            raise UserInputError(
                f"context {index} ({texts[0]!r}) encodes to no tokens and the tokenizer has neither a BOS nor an "
                "EOS token to condition the first continuation token on; give a non-empty context"
            )
        context = [token]
    # The model reads t[:-1], at most max_length tokens: len(prefix) + kept + len(continuation) - 1 <= max_length.
    room = max_length + 1 - len(prefix) - len(continuation)
    if room < (0 if prefix else 1):
        raise UserInputError(
            f"continuation {index} ({texts[1][:60]!r}) has {len(continuation)} tokens, which with "
            f"{len(prefix)} BOS token(s) and {'no' if prefix else 'at least one'} context token does not fit in "
            f"backbone.max_length={max_length}; continuations are never truncated, so raise backbone.max_length "
            f"to at least {len(prefix) + len(continuation) - (1 if prefix else 0)}"
        )
    kept = context[len(context) - room :] if len(context) > room else context
    return prefix + kept + continuation, len(prefix) + len(kept)


def continuation_log_likelihoods(
    backbone: Any,
    contexts: Sequence[str],
    continuations: Sequence[str],
    *,
    batch_size: int = 8,
) -> tuple[Tensor, Tensor]:
    """log p(continuation | context) of each pair under the backbone's causal LM.

    For pair i, with t = (bos?) + enc(context_i) + enc(continuation_i), m_i the number of tokens
    before the continuation and n_i its token count, returns

        ll_i = Σ_{j=m_i..m_i+n_i-1} log softmax(z_{j-1})[t_j]      (full-vocabulary log-softmax),

    as ``(ll, n)``: ``ll`` float64 (N,), ``n`` int64 (N,), both on the CPU. Conventions (separate
    encodings, BOS only where the tokenizer adds one, left truncation of the context to fit
    ``backbone.max_length`` input tokens) are those of lm-evaluation-harness; see the module
    docstring. The model runs in eval mode without gradients; every module's training flag is
    restored afterwards.

    Args:
        backbone: a :class:`~bayeshead.backbones.huggingface.HuggingFaceBackbone` around an
            ``AutoModelForCausalLM`` (``backbone.is_causal_lm``).
        contexts: the N conditioning texts (may be empty strings).
        continuations: the N scored texts, with their leading space (``" Paris"``); each must
            encode to at least one token.
        batch_size: sequences per forward pass (sorted by length to limit padding).
    """
    _check_backbone(backbone)
    contexts = _check_texts(contexts, "contexts")
    continuations = _check_texts(continuations, "continuations")
    if len(contexts) != len(continuations):
        raise UserInputError(
            f"got {len(contexts)} contexts but {len(continuations)} continuations; give one context per continuation"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserInputError(f"batch_size must be a positive integer, got {batch_size!r}")
    n_pairs = len(contexts)
    if n_pairs == 0:
        return torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.int64)

    tokenizer = backbone.tokenizer
    max_length = int(backbone.max_length)
    prefix = bos_prefix(tokenizer)
    sequences = [
        _sequence(i, prefix, ctx, cont, max_length, tokenizer, (contexts[i], continuations[i]))
        for i, (ctx, cont) in enumerate(
            zip(_encode(tokenizer, contexts), _encode(tokenizer, continuations), strict=True)
        )
    ]

    model = backbone.model
    pad_id = getattr(tokenizer, "pad_token_id", None)
    pad_id = pad_id if isinstance(pad_id, int) else 0
    params = inspect.signature(model.forward).parameters
    extra: dict[str, Any] = {"use_cache": False} if "use_cache" in params else {}
    takes_positions = "position_ids" in params
    device = backbone.device

    log_likelihoods = torch.zeros(n_pairs, dtype=torch.float64)
    counts = torch.tensor([len(t) - m for t, m in sequences], dtype=torch.int64)
    order = sorted(range(n_pairs), key=lambda i: -len(sequences[i][0]))  # longest first: little padding

    flags = {module: module.training for module in backbone.modules()}
    backbone.eval()
    try:
        with torch.no_grad():
            for start in range(0, n_pairs, batch_size):
                rows = order[start : start + batch_size]
                inputs = [sequences[i][0][:-1] for i in rows]  # the last token is predicted, never read
                width = max(len(x) for x in inputs)
                ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for r, x in enumerate(inputs):
                    ids[r, : len(x)] = torch.tensor(x, dtype=torch.long)
                    mask[r, : len(x)] = 1
                kwargs = dict(extra)
                if takes_positions:  # right padding: real tokens sit at 0..len-1
                    kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp_min(0).to(device)
                logits = model(
                    input_ids=ids.to(device), attention_mask=mask.to(device), return_dict=True, **kwargs
                ).logits
                for r, i in enumerate(rows):
                    tokens, m = sequences[i]
                    n = len(tokens) - m
                    z = logits[r, m - 1 : m - 1 + n]  # z_{j-1} predicts t_j
                    z = z.double() if z.dtype == torch.float64 else z.float()
                    targets = torch.tensor(tokens[m:], dtype=torch.long, device=z.device)
                    picked = torch.log_softmax(z, dim=-1).gather(-1, targets[:, None])
                    log_likelihoods[i] = picked.double().sum().cpu()
    finally:
        for module, flag in flags.items():
            module.training = flag
    return log_likelihoods, counts
