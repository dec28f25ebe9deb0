"""A causal LM's next-token logits of a few answer tokens, from last-token features alone.

The LM's logit of token t after a prompt is w_tᵀ h_last (+ b_t), with h_last the final-normed
state of the prompt's last real token (the backbone's ``last_token`` features) and w_t, b_t row t of
the LM head; models with ``final_logit_softcapping`` (Gemma-2 style) then apply c·tanh(z / c).
:func:`answer_logits` multiplies only the answers' rows, never the full (B, vocabulary) product.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from bayeshead.errors import UserInputError

__all__ = ["answer_logits"]


def answer_logits(backbone: Any, features: Tensor, answers: Sequence[str]) -> Tensor:
    """(B, C) logits of the answers' tokens t_c (see :func:`~bayeshead.backbones.answer_head.answer_token_ids`)
    given ``last_token`` features (B, d) of a causal-LM backbone."""
    if getattr(backbone, "pooling", "last_token") != "last_token":
        raise UserInputError(
            f"answer logits need last-token features, but the backbone pools with {backbone.pooling!r}; "
            "set backbone.pooling=last_token"
        )
    rows, bias = backbone.answer_head_rows(answers)
    rows = rows.to(features.device, features.dtype)
    logits = features @ rows.T
    if bias is not None:
        logits = logits + bias.to(features.device, features.dtype)
    cap = getattr(backbone.model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits
