"""Early stopping on validation NLL (lower is better), with the best parameters kept."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from bayeshead.errors import UserInputError

__all__ = ["EarlyStopping"]


class EarlyStopping:
    """Stop after ``patience`` validations without an improvement larger than ``min_delta``.

    ``update(value, state)`` returns True when training should stop; ``best_state`` holds a copy
    of the state passed with the best value (the trainer restores it at the end).
    """

    def __init__(self, patience: int | None, min_delta: float = 0.0) -> None:
        if patience is not None and patience <= 0:
            raise UserInputError(f"patience must be a positive integer or None, got {patience}")
        self.patience = patience
        self.min_delta = float(min_delta)
        self.best = math.inf
        self.bad_rounds = 0
        self.best_state: dict[str, Tensor] | None = None

    def update(self, value: float, state: dict[str, Tensor]) -> bool:
        if not math.isfinite(value):
            raise FloatingPointError(f"validation NLL is {value}; lower the learning rate or check the data")
        if value < self.best - self.min_delta:
            self.best = value
            self.bad_rounds = 0
            if self.patience is not None:  # without early stopping nothing is ever restored
                self.best_state = {k: v.detach().clone() for k, v in state.items()}
        else:
            self.bad_rounds += 1
        return self.patience is not None and self.bad_rounds >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_rounds": self.bad_rounds, "best_state": self.best_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = float(state["best"])
        self.bad_rounds = int(state["bad_rounds"])
        best = state.get("best_state")
        self.best_state = None if best is None else {k: torch.as_tensor(v).clone() for k, v in best.items()}
