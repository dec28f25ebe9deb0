"""The post-hoc stage after training: cached features -> ``fit_posthoc`` -> optional +LA refinement.

Which data a head fits on is declared by its ``posthoc_data`` attribute: ``"train"`` (last-layer
Laplace: the GGN of the training set, with validation data for a prior grid search),
``"validation"`` (temperature scaling: held-out logits) or ``"none"``. Post-hoc fits over the
whole model (Laplace over adapters, TFB) belong to the methods (:mod:`bayeshead.methods`).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

from bayeshead.errors import UserInputError
from bayeshead.training.evaluate import collect_features

if TYPE_CHECKING:
    from bayeshead.data import TextDataset
    from bayeshead.model import BayesianModel

__all__ = ["run_posthoc"]


def run_posthoc(model: BayesianModel, train: TextDataset, val: TextDataset | None) -> dict[str, float]:
    """Fit the head's post-hoc part and, if ``training.laplace_refine``, refine a VBLL head
    (class rows, or per option for multiple choice) with last-layer Laplace covariances
    (δ = ``laplace_prior_precision`` or 1 / the head's prior variance).
    Returns what was chosen (e.g. the prior precision), for the log."""
    head = model.head
    cfg = model.config.training
    needs = getattr(head, "posthoc_data", "none")
    train_features = None
    out: dict[str, float] = {}
    if needs == "train":
        train_features = collect_features(model, train)
        kwargs = {}
        if val is not None and "val_features" in inspect.signature(head.fit_posthoc).parameters:
            kwargs = {"val_features": collect_features(model, val), "val_targets": val.labels}
        out.update(head.fit_posthoc(train_features, train.labels, **kwargs) or {})
    elif needs == "validation":
        if val is None:
            raise UserInputError(
                f"the {head.config.kind} head fits on held-out data after training, but no validation "
                "data was given; pass val=... to fit (or --val / a validation fraction on the CLI)"
            )
        out.update(head.fit_posthoc(collect_features(model, val), val.labels) or {})
    elif needs != "none":
        raise UserInputError(
            f"{type(head).__name__}.posthoc_data must be 'train', 'validation' or 'none', got {needs!r}"
        )
    if cfg.laplace_refine:
        from bayeshead.heads.laplace_refine import (
            SupportsLaplaceRefinement,
            SupportsOptionLaplaceRefinement,
            refine_options_with_laplace,
            refine_with_laplace,
        )

        if isinstance(head, SupportsOptionLaplaceRefinement):
            refine = refine_options_with_laplace
        elif isinstance(head, SupportsLaplaceRefinement):
            refine = refine_with_laplace
        else:
            raise UserInputError(
                f"training.laplace_refine needs a Gaussian last layer with independent class rows "
                f"(vbll_classification) or a per-option one (vbll_options), but the head is "
                f"{head.config.kind!r}; set laplace_refine=false"
            )
        delta = cfg.laplace_prior_precision
        if delta is None:
            delta = 1.0 / float(head.prior_var)
        if train_features is None:
            train_features = collect_features(model, train)
        refine(head, train_features, train.labels, float(delta))
        out["laplace_prior_precision"] = float(delta)
    return out
