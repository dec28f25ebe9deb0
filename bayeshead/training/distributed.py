"""Data-parallel training across processes (``torchrun``), gloo on CPU and NCCL on GPU.

The trainer never wraps the model in ``DistributedDataParallel``: the alternating recipe steps
two disjoint parameter sets per mini-batch (head, then adapters), and DDP's reducer expects every
trainable parameter to receive a gradient in every backward. Instead each block averages its own
gradients across ranks with one flattened ``all_reduce`` right after its backward pass, i.e. before
the (manifold) optimizer step, which is the same synchronous data-parallel SGD that DDP performs.

Every rank holds the whole model, processes a disjoint slice of each global mini-batch and weights
its loss by ``local_size / global_size · world_size``, so the averaged gradient equals the gradient
of the global-batch mean, also for uneven slices (the last, smaller batch).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from bayeshead.parallel import all_reduce_sum_floats

__all__ = ["DistContext", "init_distributed", "local_slice"]


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job: ``rank`` of ``world_size`` (1 when not distributed)."""

    rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes checkpoints, logs and result files."""
        return self.rank == 0

    def all_reduce_mean_(self, tensors: Iterable[Tensor | None]) -> None:
        """Average ``tensors`` (gradients) across ranks in place, with one flattened all-reduce."""
        items = [t for t in tensors if t is not None]
        if not self.enabled or not items:
            return
        flat = torch.cat([t.reshape(-1).to(torch.float64) for t in items])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= self.world_size
        offset = 0
        for t in items:
            n = t.numel()
            t.copy_(flat[offset : offset + n].view_as(t))
            offset += n

    def all_reduce_sum(self, values: Sequence[float]) -> list[float]:
        """Sum a few Python numbers (metric numerators and counts) across ranks, in fp64."""
        return all_reduce_sum_floats(list(values))

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def init_distributed() -> DistContext:
    """Join the process group that ``torchrun`` describes (``WORLD_SIZE`` > 1), else run alone.

    An already initialised default group is reused. The backend is gloo on CPU and NCCL when
    CUDA is available; set ``BAYESHEAD_DIST_BACKEND`` to override.
    """
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size())
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    if not dist.is_available():
        raise RuntimeError(
            f"WORLD_SIZE={world_size} but this torch build has no torch.distributed; run one process"
        )
    backend = os.environ.get("BAYESHEAD_DIST_BACKEND") or ("nccl" if torch.cuda.is_available() else "gloo")
    dist.init_process_group(backend=backend)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return DistContext(dist.get_rank(), dist.get_world_size())


def local_slice(indices: Tensor, ctx: DistContext) -> Tensor:
    """This rank's part of a global mini-batch: contiguous, near-equal chunks in rank order."""
    if not ctx.enabled:
        return indices
    return torch.tensor_split(indices, ctx.world_size)[ctx.rank]
