"""One call that seeds every random source bayeshead draws from: :func:`seed_everything`."""

from __future__ import annotations

import random

__all__ = ["seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every device) with
    ``seed`` (0 <= seed < 2**64; NumPy takes it modulo 2**32)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
