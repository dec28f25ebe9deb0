"""The ``tune:`` section of a suite: budget, objective, seed and search-space changes.

    tune:
      n_trials: 20                 # the same for every method (and task)
      objective: nll               # validation NLL; or ece, or nll+ece (nll + ece_weight * ece)
      seed: 0                      # seeds the TPE sampler
      space:                       # for every method whose config has the key
        optimizer.lr: {kind: log_uniform, low: 1e-5, high: 1e-3}
      methods:
        lora+mle: {exclude: [head.weight_decay]}       # MLE stays unregularised
        polar+vbll: {space: {head.prior_scale: {kind: log_uniform, low: 1, high: 300}}}

A method's space is the default its registry entries declare (:func:`~bayeshead.search_space.declared_space`),
then ``space`` (added or replaced where the method's config has the key), then its own entry's
``space`` (which must name keys of its config), less ``exclude`` (global and the method's), and,
with ``only``, restricted to those keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt

from bayeshead.config import ConfigError, StrictModel
from bayeshead.search_space import MISSING, Distribution, SearchSpace, config_value, declared_space

if TYPE_CHECKING:
    from bayeshead.config import ExperimentConfig

__all__ = ["TuneConfig", "MethodTuning", "Objective"]

Objective = Literal["nll", "ece", "nll+ece"]


class MethodTuning(StrictModel):
    """Changes to one method's search space."""

    space: dict[str, Distribution] = Field(
        default_factory=dict, description="Distributions added or replaced (dotted config keys of this method)."
    )
    exclude: list[str] = Field(default_factory=list, description="Keys left untuned (at the method's config value).")
    only: list[str] | None = Field(None, description="Tune only these keys (None: every key of the space).")


class TuneConfig(StrictModel):
    """How ``bayeshead bench tune`` searches: one seeded TPE study per method x task, scored on
    validation data only."""

    n_trials: PositiveInt = Field(20, description="Trials per study (method x task), the same for every method.")
    objective: Objective = Field(
        "nll", description="Validation score minimised: nll, ece, or nll+ece (nll + ece_weight * ece)."
    )
    ece_weight: PositiveFloat = Field(1.0, description="Weight of the ECE in the nll+ece objective.")
    seed: int = Field(0, description="Seed of the TPE sampler (each trial's proposal is seeded from it and its index).")
    startup_trials: NonNegativeInt = Field(
        5, description="Random trials before TPE starts modelling (Optuna's n_startup_trials)."
    )
    space: dict[str, Distribution] = Field(
        default_factory=dict, description="Distributions added or replaced for every method whose config has the key."
    )
    exclude: list[str] = Field(default_factory=list, description="Keys no method tunes.")
    methods: dict[str, MethodTuning] = Field(
        default_factory=dict, description="Per-method changes, by the suite's method names."
    )

    def space_for(self, method: str, config: ExperimentConfig) -> SearchSpace:
        """The search space of suite method ``method`` whose resolved config is ``config``."""
        resolved = config.model_dump()
        space = declared_space(config)
        space.update(
            {k: d for k, d in self.space.items() if config_value(resolved, k) is not MISSING and d.applies(resolved)}
        )
        own = self.methods.get(method, MethodTuning())
        named = {**own.space, **{k: None for k in own.exclude}, **{k: None for k in own.only or []}}
        for key, dist in named.items():
            if config_value(resolved, key) is MISSING:
                raise ConfigError(
                    f"tune.methods[{method!r}] names {key!r}, which is not an option of that method's config "
                    f"(head {config.head.kind}, method {config.method.kind}, optimizer {config.optimizer.kind}); "
                    "give a dotted key of its config such as optimizer.lr or head.weight_decay"
                )
            for cond in getattr(dist, "when", {}):
                if config_value(resolved, cond) is MISSING:
                    raise ConfigError(f"tune.methods[{method!r}]: {key!r} has a 'when' on {cond!r}, not a config key")
        space.update({k: d for k, d in own.space.items() if d.applies(resolved)})
        for key in [*self.exclude, *own.exclude]:
            space.pop(key, None)
        if own.only is not None:
            unspaced = [k for k in own.only if k not in space]
            if unspaced:
                raise ConfigError(
                    f"tune.methods[{method!r}].only names {unspaced}, which have no distribution for this method "
                    f"(its space: {sorted(space)}); add them under tune.methods[{method!r}].space"
                )
            space = {k: d for k, d in space.items() if k in own.only}
        return space
