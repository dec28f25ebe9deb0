"""One training step of the dense VBLL classification head at LLM width: one covariance per
class (``covariance_sharing="per_class"``, today's default and vbll's) against one covariance
shared by all classes (``"shared"``), with the diagonal head as a floor.

A step is zero_grad + loss (Jensen bound + KL/N + noise prior/N) + backward + ``torch.optim.Adam``
step over all head parameters, on a fixed batch of B features (fp32). The variants run in
interleaved rounds (each round runs every variant once, in an order rotated from round to round)
so that a change in machine load hits all of them alike; the table gives per variant the median
and the spread (min–max) over rounds, and the ratio per_class / shared computed within each
round (median and min–max).

    python benchmarks/perf_vbll_dense.py                      # d = 4096, C = 2 and 4
    python benchmarks/perf_vbll_dense.py --dim 1024 --rounds 9
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from bayeshead.heads.vbll_classification import VBLLClassificationConfig, VBLLClassificationHead

N_TRAIN = 1000
VARIANTS = {
    "per_class": {"covariance": "dense", "covariance_sharing": "per_class"},
    "shared": {"covariance": "dense", "covariance_sharing": "shared"},
    "diagonal": {"covariance": "diagonal"},
}


def make_step(variant: str, d: int, c: int, batch: int, device: str) -> tuple[Callable[[], None], int]:
    """A closure running one training step, and the head's parameter count."""
    torch.manual_seed(0)
    config = VBLLClassificationConfig(n_train=N_TRAIN, **VARIANTS[variant])
    head = VBLLClassificationHead(d, c, config).to(device)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, d, generator=gen).to(device)
    y = torch.randint(0, c, (batch,), generator=gen).to(device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        head.loss(x, y).total.backward()
        optimizer.step()

    return step, sum(p.numel() for p in head.parameters())


def timed(step: Callable[[], None], device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):8.3f} [{min(values):.3f}–{max(values):.3f}]"


def run(d: int, c: int, batch: int, rounds: int, warmup: int, device: str) -> None:
    steps = {name: make_step(name, d, c, batch, device) for name in VARIANTS}
    for _ in range(warmup):  # first-touch of the Adam state and the allocator
        for step, _count in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            times[name].append(timed(steps[name][0], device))
    ratios = [p / s for p, s in zip(times["per_class"], times["shared"], strict=True)]
    ratio_diag = [s / g for s, g in zip(times["shared"], times["diagonal"], strict=True)]
    for name in names:
        print(f"{d:>5}{c:>3}  {name:<10}{steps[name][1]:>12,}  {spread(times[name])}")
    print(f"{'':>8}  per_class / shared   {spread(ratios)}")
    print(f"{'':>8}  shared / diagonal    {spread(ratio_diag)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, nargs="+", default=[4096])
    parser.add_argument("--classes", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, "
          f"B={args.batch}, fp32, Adam, {args.rounds} interleaved rounds after {args.warmup} warm-up")
    print("seconds per training step: median [min–max] over rounds; ratios taken within each round")
    print(f"{'d':>5}{'C':>3}  {'variant':<10}{'params':>12}  {'median [spread]':>8}")
    for d in args.dim:
        for c in args.classes:
            run(d, c, args.batch, args.rounds, args.warmup, args.device)


if __name__ == "__main__":
    main()
