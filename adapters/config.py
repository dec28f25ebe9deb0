"""Configs of the built-in adapters.

``target_modules`` chooses the layers to adapt, as in PEFT: a list of name suffixes
(``["query", "value"]`` matches ``encoder.layer.0.attention.self.query``), a regular
expression string matched in full against the module name, or ``"all-linear"`` (every
``nn.Linear``/``Conv1D`` except the output head unless ``include_output_head``).
The default list covers MiniLM/BERT (``query``, ``value``), Llama/Qwen2 (``q_proj``, ``v_proj``)
and GPT-2 (``c_attn``).

``layers_to_transform`` (as in PEFT's ``LoraConfig``) keeps only targets inside the listed
transformer blocks, the block index being the number after ``layers.``/``layer.``/``h.``/
``blocks.``/``block.`` in the module name (``model.layers.3.self_attn.q_proj`` is in block 3);
``top_layers=k`` is the same for the last k blocks. They are checked against the model when
the adapters are injected.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt, confloat, model_validator

from bayeshead.config import ComponentConfig

__all__ = ["AdapterConfig", "LoRAConfig", "PoLARConfig", "DEFAULT_TARGETS"]

DEFAULT_TARGETS: list[str] = ["query", "value", "q_proj", "v_proj", "c_attn"]


class AdapterConfig(ComponentConfig):
    """Options every low-rank adapter shares."""

    rank: PositiveInt = Field(8, description="r, the rank of the update.")
    alpha: PositiveFloat = Field(16.0, description="Scale α; the update is multiplied by α/r.")
    dropout: confloat(ge=0.0, lt=1.0) = Field(0.0, description="Dropout on the adapter's input.")  # type: ignore[valid-type]
    target_modules: list[str] | str = Field(
        default_factory=lambda: list(DEFAULT_TARGETS),
        description='Name suffixes, a full-match regex, or "all-linear".',
    )
    include_output_head: bool = Field(
        False, description='With "all-linear": also adapt the LM/classifier output head.'
    )
    layers_to_transform: int | list[int] | None = Field(
        None,
        description="Adapt only targets inside these transformer blocks (0 = the first block), as "
        "PEFT's LoraConfig.layers_to_transform; None adapts every block.",
    )
    top_layers: int | None = Field(
        None,
        description="Adapt only targets inside the last k blocks (k counts from the top block); "
        "for k = 0 leave the adapter out. Not together with layers_to_transform.",
    )

    @model_validator(mode="after")
    def _one_layer_choice(self) -> AdapterConfig:
        from bayeshead.adapters.inject import check_layer_options

        check_layer_options(self)
        return self


class LoRAConfig(AdapterConfig):
    """LoRA (Hu et al. 2021): ΔW = (α/r)·B·A, B = 0 at init."""

    kind: Literal["lora"] = "lora"


class PoLARConfig(AdapterConfig):
    """PoLAR (Lion et al. 2025): ΔW = (α/r)·U·Θ·Vᵀ, U and V on Stiefel manifolds, Θ = 0 at init."""

    kind: Literal["polar"] = "polar"
    theta_lr_ratio: PositiveFloat = Field(
        64.0,
        description="Θ trains at this multiple of the optimizer's lr (U, V keep lr or stiefel_lr). Θ has r² "
        "entries where LoRA's B has m·r, so at a shared lr Adam grows PoLAR's ΔW far slower than LoRA's; "
        "64 was chosen on validation data of two corpora (benchmarks/results/vbll-defaults.md); 1 trains "
        "Θ at lr, as before.",
    )
