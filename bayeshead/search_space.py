"""Search spaces for hyperparameter tuning, declared next to the options they tune.

A config class of a registry entry (head, method, optimizer, adapter) lists the options worth
tuning in a ``search_space`` class variable: dotted config keys mapped to distributions::

    class BLoBConfig(MethodConfig):
        search_space: ClassVar[SearchSpace] = {"method.prior_std": LogUniform(low=1e-2, high=1.0)}

The keys are full config paths (``method.prior_std``, ``adapter.dropout``, ``training.head_lr``),
the same strings ``--set`` and suite overrides use. A distribution may carry ``when``: config
values it applies under (``{"training.mode": "alternating"}``), so a head-steps search is not
spent on a joint run that never reads it. This module is plain data (pydantic); the tuner
(:mod:`bayeshead.bench.tune`) turns it into Optuna suggestions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, model_validator

from bayeshead.config import StrictModel
from bayeshead.errors import UserInputError

if TYPE_CHECKING:
    from bayeshead.config import ExperimentConfig

__all__ = [
    "LogUniform",
    "Uniform",
    "IntRange",
    "Choice",
    "Distribution",
    "SearchSpace",
    "TRAINING_SEARCH_SPACE",
    "declared_space",
    "config_value",
    "MISSING",
]

Scalar = str | int | float | bool | None


class _Distribution(StrictModel):
    when: dict[str, Scalar] = Field(
        default_factory=dict,
        description="Config values this distribution applies under (dotted key -> value); empty: always.",
    )

    def applies(self, resolved: Mapping[str, Any]) -> bool:
        """Whether every ``when`` condition holds in ``resolved`` (a config's ``model_dump()``)."""
        return all(config_value(resolved, key) == value for key, value in self.when.items())


class _Range(_Distribution):
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> _Range:
        if not self.low < self.high:
            raise UserInputError(f"{self.kind}: low must be below high, got low={self.low}, high={self.high}")
        return self


class LogUniform(_Range):
    """A float whose logarithm is uniform in [log low, log high] (learning rates, scales)."""

    kind: Literal["log_uniform"] = "log_uniform"

    @model_validator(mode="after")
    def _positive(self) -> LogUniform:
        if self.low <= 0:
            raise UserInputError(f"log_uniform needs low > 0, got low={self.low}; use uniform for ranges that include 0")
        return self


class Uniform(_Range):
    """A float uniform in [low, high] (dropout rates)."""

    kind: Literal["uniform"] = "uniform"


class IntRange(_Distribution):
    """An integer uniform in {low, ..., high} (or log-uniform with ``log: true``)."""

    kind: Literal["int"] = "int"
    low: int
    high: int
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if not self.low < self.high:
            raise UserInputError(f"int: low must be below high, got low={self.low}, high={self.high}")
        if self.log and self.low < 1:
            raise UserInputError(f"int with log: true needs low >= 1, got low={self.low}")
        return self


class Choice(_Distribution):
    """One of a list of values (a structure, a link function)."""

    kind: Literal["choice"] = "choice"
    values: list[Scalar] = Field(min_length=2)


Distribution = Annotated[LogUniform | Uniform | IntRange | Choice, Field(discriminator="kind")]
"""One tuned option: ``{kind: log_uniform | uniform | int | choice, ...}`` in a suite YAML."""

SearchSpace = dict[str, Distribution]

TRAINING_SEARCH_SPACE: SearchSpace = {
    "training.head_lr": LogUniform(low=1e-4, high=1e-1),
    "training.head_steps": IntRange(low=1, high=4, when={"training.mode": "alternating"}),
}
"""The shared training options every method is tuned over: the head's learning rate, and the
head steps per mini-batch where the alternating schedule reads them."""


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""What :func:`config_value` returns for a key the config does not have."""


def config_value(resolved: Mapping[str, Any], key: str) -> Any:
    """The value at dotted ``key`` of a dumped config, or :data:`MISSING`."""
    node: Any = resolved
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return MISSING
        node = node[part]
    return node


def declared_space(config: ExperimentConfig) -> SearchSpace:
    """The default space of a resolved config: the training options, then whatever the config
    classes of its optimizer, adapter, head and method declare (later ones win on a shared key),
    kept where the key exists in ``config`` and the ``when`` conditions hold."""
    sections = [config.optimizer, config.adapter, config.head, config.method]
    space: SearchSpace = dict(TRAINING_SEARCH_SPACE)
    for section in sections:
        if section is not None:
            space.update(getattr(type(section), "search_space", {}))
    resolved = config.model_dump()
    return {
        key: dist for key, dist in space.items() if config_value(resolved, key) is not MISSING and dist.applies(resolved)
    }
