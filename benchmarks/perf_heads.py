"""Forward + loss + backward time of the VBLL heads against ``vbll`` 0.4.9 and a deterministic head.

For d ∈ {384, 4096}, C ∈ {2, 5} and B = 32 (fp32, CPU unless --device is given), each head is
timed side by side with vbll's matching layer (Regression, DiscClassification,
GenClassification; vbll's dense layers are skipped where their broadcast quadratic form would
materialise more than 2 GiB; vbll's loss is called through ``_get_train_loss_fn`` so that its forward does
not also draw its 20-sample predictive) and with the deterministic softmax head. Timings are
medians over repeats after warm-up. Regression uses k = C outputs.

Memory of the dense covariance: the analytic parameter bytes R·d²·4 and the measured growth of
the peak resident set (VmHWM after, minus VmRSS before) of a fresh process that builds the
head and runs one forward/backward step (CPU, Linux only).

    python benchmarks/perf_heads.py            # the full grid
    python benchmarks/perf_heads.py --quick    # d = 384 only
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import time
from collections.abc import Callable

import torch

from bayeshead.heads.deterministic import DeterministicHead
from bayeshead.registry import HEADS

B, N_TRAIN, RANK = 32, 1000, 3
#: vbll's dense quadratic form broadcasts its (C, d, d) factor against the batch, and matmul
#: materialises B·C·d² floats (B·C·d²·4 bytes: 10 GiB at d = 4096, C = 5); skip it above this.
VBLL_DENSE_MAX_BYTES = 2 * 2**30
REF_CLASS = {
    "vbll_regression": "Regression",
    "vbll_classification": "DiscClassification",
    "vbll_generative_classification": "GenClassification",
}


def _targets(name: str, c: int, device: str) -> torch.Tensor:
    if name == "vbll_regression":
        return torch.randn(B, c, device=device)
    return torch.randint(0, c, (B,), device=device)


def _ours(name: str, cov: str, d: int, c: int, device: str) -> Callable[[torch.Tensor, torch.Tensor], None]:
    head = HEADS.create(name, d, c, HEADS.config_class(name)(covariance=cov, lowrank_rank=RANK, n_train=N_TRAIN))
    head.to(device)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        head.zero_grad(set_to_none=True)
        head.loss(x, y).total.backward()

    return step


def _ref(name: str, cov: str, d: int, c: int, device: str) -> Callable[[torch.Tensor, torch.Tensor], None] | None:
    import vbll

    if name == "vbll_generative_classification" and cov != "diagonal":
        return None  # vbll implements diagonal class-mean covariances only
    if cov == "dense" and B * c * d * d * 4 > VBLL_DENSE_MAX_BYTES:
        return None
    kwargs = {"parameterization": cov}
    if name != "vbll_generative_classification":
        kwargs["cov_rank"] = RANK
    layer = getattr(vbll, REF_CLASS[name])(d, c, 1.0 / N_TRAIN, **kwargs).to(device)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        layer.zero_grad(set_to_none=True)
        layer._get_train_loss_fn(x)(y).backward()

    return step


def _det(d: int, c: int, device: str) -> Callable[[torch.Tensor, torch.Tensor], None]:
    head = DeterministicHead(d, c).to(device)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        head.zero_grad(set_to_none=True)
        head.loss(x, y).total.backward()

    return step


def _median_ms(step: Callable[[torch.Tensor, torch.Tensor], None], x: torch.Tensor, y: torch.Tensor,
               warmup: int, repeats: int, device: str) -> float:
    times = []
    for i in range(warmup + repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step(x, y)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def _status_kib(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return float(line.split()[1])
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _peak_rss_child(which: str, name: str, d: int, c: int, queue: mp.Queue) -> None:
    torch.manual_seed(0)
    x, y = torch.randn(B, d), _targets(name, c, "cpu")
    before = _status_kib("VmRSS")
    step = _ours(name, "dense", d, c, "cpu") if which == "ours" else _ref(name, "dense", d, c, "cpu")
    assert step is not None
    step(x, y)
    # VmHWM (not ru_maxrss, which keeps the forking parent's high-water mark across exec)
    queue.put((_status_kib("VmHWM") - before) / 1024.0)  # KiB -> MiB


def _peak_rss_mib(which: str, name: str, d: int, c: int) -> float:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_rss_child, args=(which, name, d, c, queue))
    proc.start()
    value = queue.get()
    proc.join()
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="d = 384 only")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-process memory measurement")
    parser.add_argument("--memory-only", action="store_true", help="only the memory table")
    args = parser.parse_args()
    dims = [384] if args.quick else [384, 4096]
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, B={B}, fp32")
    print("time: median ms of zero_grad + loss + backward; ratio = ours / vbll and ours / deterministic")
    header = f"{'head':<31}{'cov':<9}{'d':>5}{'C':>3}{'ours':>10}{'vbll':>10}{'det':>8}{'/vbll':>7}{'/det':>8}"
    if not args.memory_only:
        _time_grid(dims, args.device, header)
    if args.no_memory or args.device != "cpu":
        return
    _memory_table(dims)


def _time_grid(dims: list[int], device: str, header: str) -> None:
    print(header)
    print("-" * len(header))
    warm_x = torch.randn(B, 384, device=device)  # global warm-up (thread pools, allocator)
    for name in REF_CLASS:
        step = _ours(name, "diagonal", 384, 5, device)
        _median_ms(step, warm_x, _targets(name, 5, device), 5, 5, device)
    for d in dims:
        for c in (2, 5):
            x = torch.randn(B, d, device=device)
            ycls = _targets("vbll_classification", c, device)
            det_ms = _median_ms(_det(d, c, device), x, ycls, 10, 50, device)
            for name in REF_CLASS:
                y = _targets(name, c, device)
                for cov in ("diagonal", "dense", "lowrank"):
                    heavy = cov == "dense" and d > 1000
                    warmup, repeats = (1, 3) if heavy else (5, 25)
                    if heavy and name == "vbll_generative_classification":
                        warmup, repeats = (0, 1)  # one d×d Cholesky per class: O(C·d³)
                    ours = _median_ms(_ours(name, cov, d, c, device), x, y, warmup, repeats, device)
                    ref_step = _ref(name, cov, d, c, device)
                    ref = (_median_ms(ref_step, x, y, warmup, repeats, device)
                           if ref_step is not None else float("nan"))
                    ratio = f"{ours / ref:7.2f}" if ref_step is not None else f"{'n/a':>7}"
                    if ref_step is None and cov == "dense" and name != "vbll_generative_classification":
                        ratio = f"{'skip':>7}"  # see VBLL_DENSE_MAX_BYTES
                    ref_txt = f"{ref:10.2f}" if ref_step is not None else f"{'n/a':>10}"
                    print(f"{name:<31}{cov:<9}{d:>5}{c:>3}{ours:10.2f}{ref_txt}{det_ms:8.3f}{ratio}{ours / det_ms:8.1f}",
                          flush=True)


def _memory_table(dims: list[int]) -> None:
    print()
    print("dense covariance memory (fp32): parameters R·d²·4 bytes; measured peak-RSS growth of one step")
    print(f"{'head':<31}{'d':>5}{'C':>3}{'params MiB':>12}{'ours MiB':>10}{'vbll MiB':>10}")
    for d in dims:
        for c in (2, 5):
            for name in ("vbll_regression", "vbll_classification"):
                params = c * d * d * 4 / 2**20
                ours = _peak_rss_mib("ours", name, d, c)
                if B * c * d * d * 4 > VBLL_DENSE_MAX_BYTES:
                    ref_txt = f"{'skipped':>10}"  # would need > B·C·d²·4 bytes
                else:
                    ref_txt = f"{_peak_rss_mib('vbll', name, d, c):10.1f}"
                print(f"{name:<31}{d:>5}{c:>3}{params:12.1f}{ours:10.1f}{ref_txt}", flush=True)


if __name__ == "__main__":
    main()
