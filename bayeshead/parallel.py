"""Sums over the processes of a data-parallel job, for code below the training layer.

Post-hoc fits (Laplace curvature, evidence terms, temperature's validation sums) accumulate
*sums over the data*: Σ_n Λ_n ⊗ φ_nφ_nᵀ, Σ_n log p(y_n | x_n), the example count N. When each of R
processes holds a disjoint shard of the data, the fit of the whole data set needs the sum over
shards, S = Σ_r S_r, before anything nonlinear (a Cholesky factor, an eigen-decomposition, the
evidence's log-determinant) is applied to it. :func:`all_reduce_sum` is that one step; every
post-hoc statistic goes through it, so one code path serves one process and many.

The process group is whatever ``torch.distributed`` holds (``accelerate launch`` and ``torchrun``
both create it); with none, or a world of one, every function here is the identity and touches
nothing. Sums run in the tensor's own dtype: callers accumulate curvature in fp32/fp64.

This module imports only torch and sits with the foundation modules (registry, config, types):
heads, methods and training may all use it.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["is_distributed", "world_size", "rank", "all_reduce_sum", "all_reduce_sum_floats"]


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes in the job (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Return Σ_r tensor_r over all processes (a new tensor; ``tensor`` is left unchanged).

    Without a process group this returns ``tensor`` itself. The result has ``tensor``'s dtype and
    device; on NCCL the tensor must live on this process's GPU, on gloo on the CPU.
    """
    if not is_distributed():
        return tensor
    out = tensor.detach().clone().contiguous()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_reduce_sum_floats(values: list[float], *, device: torch.device | str = "cpu") -> list[float]:
    """Σ_r over processes of a few Python numbers (counts, log-likelihood sums), in fp64."""
    if not is_distributed():
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()
