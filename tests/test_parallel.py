"""bayeshead.parallel: sums over the ranks of a job, the identity in one process."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bayeshead import parallel


def test_one_process_returns_its_input_unchanged():
    t = torch.randn(3, 2, dtype=torch.float64)
    assert parallel.all_reduce_sum(t) is t
    assert parallel.all_reduce_sum_floats([1, 2.5]) == [1.0, 2.5]
    assert (parallel.world_size(), parallel.rank(), parallel.is_distributed()) == (1, 0, False)


def _worker(rank: int, world: int, init_file: str, out_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        local = torch.arange(6, dtype=torch.float64).reshape(2, 3) * (rank + 1)
        summed = parallel.all_reduce_sum(local)
        floats = parallel.all_reduce_sum_floats([rank + 0.5, 1.0])
        unchanged = bool(torch.equal(local, torch.arange(6, dtype=torch.float64).reshape(2, 3) * (rank + 1)))
        torch.save(
            {"summed": summed, "floats": floats, "unchanged": unchanged,
             "world": parallel.world_size(), "rank": parallel.rank()},
            f"{out_file}.{rank}",
        )
    finally:
        dist.destroy_process_group()


def test_two_processes_sum_tensors_and_floats_over_ranks(tmp_path):
    world = 2
    mp.spawn(_worker, args=(world, str(tmp_path / "init"), str(tmp_path / "out")), nprocs=world)
    expected = torch.arange(6, dtype=torch.float64).reshape(2, 3) * 3  # (1 + 2) × the base
    for rank in range(world):
        got = torch.load(tmp_path / f"out.{rank}")
        assert torch.equal(got["summed"], expected)
        assert got["floats"] == [0.5 + 1.5, 2.0]
        assert got["unchanged"], "all_reduce_sum must not modify its input"
        assert (got["world"], got["rank"]) == (world, rank)
