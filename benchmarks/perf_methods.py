"""Cost of every uncertainty method side by side: one training step and one prediction.

The methods are those of the quick suite (``bayeshead.bench.suite.QUICK``, without the landing
variant; MC dropout with T = 10 passes) plus Laplace-LoRA (K-FAC). Each is built from the suite's
overrides on one backbone, whose frozen base weights all methods share (each method has its own
module tree, adapters and head; see :func:`shared_copy`), and measured on the same batch of
``--batch`` texts of exactly ``--tokens`` tokens:

* train step: one forward + backward + optimizer step of a fresh ``Trainer`` (the trainer's
  own step, with the method's hooks: BLoB's flipout sample and KL term, joint or alternating as
  the suite sets). The ensemble's step is one such step per member (M of them; adapter swaps
  between members are not timed). Post-hoc stages (last-layer Laplace, temperature, +LA
  refinement, Laplace-LoRA's K-FAC fit, TFB's β search) are not in the step; they run once on
  the benchmark batch before the rounds, and their one-off time is the ``post-hoc s`` column
  (not interleaved, one sample).
* predict: ``method.predict`` on the tokenized batch (BLoB/TFB: N sampled passes, MC dropout:
  T passes, ensemble: M passes, Laplace-LoRA: the linearised probit predictive).

Rounds are interleaved: round r runs every method once (train step, then predict) in an order
shuffled with seed r, so machine load falls on all methods alike. Reported: medians, min–max
spreads, ratios to LoRA + MLE computed within each round and then the median, and peak memory
per call (on a GPU ``torch.cuda.max_memory_allocated`` above the memory in use before the call;
on a CPU the growth of the resident set's high-water mark, reset through
``/proc/self/clear_refs`` before each call, with glibc's mmap threshold fixed at 64 KiB so that
freed tensors go back to the system; ``tracemalloc`` does not see torch's allocations).

    python benchmarks/perf_methods.py                                   # MiniLM on the CPU, B=32, L=64
    python benchmarks/perf_methods.py --rounds 7 --threads 2
    python benchmarks/perf_methods.py --backbone random --shape llama-3.1-8b --device cuda --batch 4 --tokens 300
    python benchmarks/perf_methods.py --backbone random --shape tiny --rounds 1   # CPU smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

BASELINE = "lora+mle"
#: Quick-suite methods measured here (the landing variant is an optimizer, not a method).
SUITE_METHODS = [
    "lora+mle", "lora+map", "lora+temperature", "lora+mc_dropout", "lora+la", "lora+vbll",
    "polar+vbll", "polar+vbll+la", "lora+ensemble", "lora+blob", "lora+tfb",
]
#: Methods outside the suite: (suite method they start from or None, overrides on top).
EXTRA_METHODS: dict[str, tuple[str | None, list[str]]] = {
    "lora+laplace_lora": (None, [
        "adapter.kind=lora", "head.kind=deterministic", "method.kind=laplace_lora",
        "method.hessian_structure=kron",
    ]),
    "lora+mle (merged)": ("lora+mle", ["evaluation.merge_adapters=true"]),
    "polar+vbll (merged)": ("polar+vbll", ["evaluation.merge_adapters=true"]),
}
ALL_METHODS = [*SUITE_METHODS, *EXTRA_METHODS]
#: Per-method settings of this benchmark on top of the suite's (MC dropout with T = 10).
BENCH_OVERRIDES = {"lora+mc_dropout": ["method.n_samples=10"]}
#: Named model shapes of ``--backbone random`` (transformers.LlamaConfig arguments).
SHAPES: dict[str, dict[str, int | float]] = {
    "llama-3.1-8b": dict(
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, vocab_size=128256, rope_theta=500000.0, max_position_embeddings=8192,
    ),
    "tiny": dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=30522, max_position_embeddings=512,
    ),
}
NUM_CLASSES = 3
WORDS = (
    "the market rallied after strong earnings while analysts warned that rising rates could slow "
    "growth in housing retail and travel over the coming quarter as consumers cut spending"
).split()


# -- the backbone ----------------------------------------------------------------------------------
def shared_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``module``'s module tree whose parameters and buffers are the very same tensors
    (no weight is duplicated). Injecting adapters into the copy replaces modules in the copy only,
    so every method gets its own adapters over one set of frozen base weights."""
    memo = {id(t): t for t in (*module.parameters(), *module.buffers())}
    tokenizer = getattr(module, "tokenizer", None)
    if tokenizer is not None:
        memo[id(tokenizer)] = tokenizer
    return copy.deepcopy(module, memo)


def build_backbone(kind: str, shape: str, tokens: int, device: str, dtype: torch.dtype):
    """MiniLM (embedded, mean pooling), SmolLM2-135M (the packaged GGUF, last-token pooling) or
    a randomly initialised Llama of a named shape (last-token pooling, no LM head: the features
    are the final normed hidden states)."""
    from bayeshead.backbones.huggingface import HuggingFaceBackbone, resolve_model_path

    if kind == "minilm":
        backbone = HuggingFaceBackbone.from_pretrained(max_length=tokens)
        return backbone.to(device=device, dtype=dtype)
    if kind == "smollm2":
        from bayeshead.config import BackboneConfig

        config = BackboneConfig(name_or_path="smollm2-135m", pooling="last_token", max_length=tokens,
                                padding_side="left")
        return HuggingFaceBackbone.from_config(config).to(device=device, dtype=dtype)
    from transformers import AutoTokenizer, LlamaConfig, LlamaModel

    if shape not in SHAPES:
        raise SystemExit(f"--shape must be one of {sorted(SHAPES)}, got {shape!r}")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("minilm"))  # ids only; any vocabulary works
    config = LlamaConfig(**SHAPES[shape], attn_implementation="sdpa")
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            net = LlamaModel(config)
    finally:
        torch.set_default_dtype(previous)
    net.eval()
    return HuggingFaceBackbone(net, tokenizer, pooling="last_token", max_length=tokens)


def method_overrides(name: str, kind: str, batch: int, tokens: int) -> list[str]:
    """The suite's base and method overrides, with this benchmark's batch, length and targets."""
    from bayeshead.bench.suite import QUICK

    start, extra = EXTRA_METHODS.get(name, (name, []))
    spec = [] if start is None else QUICK.select([start]).methods[0].overrides
    out = [*QUICK.base, *spec, *extra, *BENCH_OVERRIDES.get(name, []), f"training.batch_size={batch}",
           f"backbone.max_length={tokens}", "training.progress=false"]
    if kind in ("random", "smollm2"):
        out.append("adapter.target_modules=[q_proj, v_proj]")  # the suite's query/value, Llama names
    return out


def make_batch(backbone, batch: int, tokens: int, seed: int = 0) -> tuple[list[str], torch.Tensor, dict]:
    """``batch`` texts long enough to be truncated to exactly ``tokens`` tokens, labels, and the
    tokenized batch (on the backbone's device)."""
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(WORDS) for _ in range(2 * tokens)) for _ in range(batch)]
    labels = torch.randint(0, NUM_CLASSES, (batch,), generator=torch.Generator().manual_seed(seed))
    encoded = backbone.tokenize(texts)
    if encoded["input_ids"].shape[1] != tokens:
        raise SystemExit(f"expected {tokens} tokens per text, the tokenizer gave {encoded['input_ids'].shape[1]}")
    return texts, labels, {k: v.to(backbone.device) for k, v in encoded.items()}


# -- memory ----------------------------------------------------------------------------------------
def fix_malloc_threshold() -> bool:
    """glibc: serve every allocation of 64 KiB or more by mmap (returned on free), so the resident
    set follows live tensors and its high-water mark measures a call's peak. False elsewhere."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, 64 * 1024))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def _status_kib(field_name: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field_name + ":"):
                return float(line.split()[1])
    return float("nan")


@contextlib.contextmanager
def peak_memory(device: str, out: list[float]):
    """Append the peak memory (MiB) a block adds above what was in use before it."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        yield
        torch.cuda.synchronize()
        out.append((torch.cuda.max_memory_allocated() - before) / 2**20)
        return
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM to the current resident set
        before = _status_kib("VmRSS")
    except OSError:
        before = float("nan")
    yield
    out.append((_status_kib("VmHWM") - before) / 1024.0)


# -- one method ------------------------------------------------------------------------------------
@dataclass
class Bench:
    """A built method and its measurements (ms per call, MiB per call, one per round)."""

    name: str
    method: object
    posthoc_s: float = float("nan")
    train_ms: list[float] = field(default_factory=list)
    predict_ms: list[float] = field(default_factory=list)
    train_mib: list[float] = field(default_factory=list)
    predict_mib: list[float] = field(default_factory=list)


def build_bench(name: str, backbone, kind: str, args: argparse.Namespace, data) -> Bench:
    """Build the method on a shared copy of ``backbone`` and run its post-hoc stages once on the
    benchmark batch (so that its predictive is the fitted one)."""
    from bayeshead.config import load_config
    from bayeshead.methods import build_method
    from bayeshead.training.posthoc import run_posthoc

    config = load_config(overrides=method_overrides(name, kind, args.batch, args.tokens))
    torch.manual_seed(0)
    method = build_method(config, num_outputs=NUM_CLASSES, backbone=shared_copy(backbone))
    for head in method.heads():
        if head.config.n_train is None:
            head.set_n_train(800)  # the quick suite's training-set size (a prior weight, no cost)
    bench = Bench(name, method)
    start = time.perf_counter()
    members = getattr(method, "members", None)
    for m in range(members if isinstance(members, int) else 1):
        with method.member(m) if isinstance(members, int) else contextlib.nullcontext(method.model) as model:
            model.eval()
            run_posthoc(model, data, data)
    method.fit_posthoc(data, data)
    _sync(args.device)
    bench.posthoc_s = time.perf_counter() - start
    return bench


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _fresh_step(model, hooks, texts: list[str], labels: torch.Tensor) -> Callable[[], None]:
    """A fresh Trainer's first optimizer step on (texts, labels), as a callable."""
    from bayeshead.training import Trainer
    from bayeshead.training.hooks import StepInfo

    trainer = Trainer(model, hooks=hooks)
    trainer._set_modes()
    trainer._step_info = StepInfo(step=0, total_steps=1, step_in_epoch=0, steps_per_epoch=1, lr_multiplier=1.0)
    trainer._term_names = []
    return lambda: trainer._train_step(texts, labels, len(texts))


def train_step(bench: Bench, texts: list[str], labels: torch.Tensor, device: str) -> float:
    """Milliseconds of one training step (one per member for an ensemble), memory appended."""
    method = bench.method
    members = getattr(method, "members", None)
    total = 0.0
    peaks: list[float] = []
    for m in range(members if isinstance(members, int) else 1):
        with method.member(m) if isinstance(members, int) else contextlib.nullcontext(method.model) as model:
            step = _fresh_step(model, method.training_hooks(), texts, labels)
            _sync(device)
            with peak_memory(device, peaks):
                start = time.perf_counter()
                step()
                _sync(device)
                total += time.perf_counter() - start
    bench.train_mib.append(max(peaks))
    method.model.eval()
    return 1e3 * total


def predict(bench: Bench, batch: dict, device: str) -> float:
    """Milliseconds of one ``method.predict`` over the batch, memory appended."""
    generator = torch.Generator().manual_seed(0)
    _sync(device)
    peaks: list[float] = []
    with peak_memory(device, peaks):
        start = time.perf_counter()
        pred = bench.method.predict(batch, generator=generator)
        _ = pred.probs.sum().item()
        elapsed = time.perf_counter() - start
    bench.predict_mib.append(peaks[0])
    return 1e3 * elapsed


# -- the table -------------------------------------------------------------------------------------
def _ratios(values: dict[str, list[float]], reference: str) -> dict[str, float]:
    """Per method: the median over rounds of (its time / the reference's time in that round)."""
    ref = values[reference]
    return {name: statistics.median(v / r for v, r in zip(times, ref, strict=True)) for name, times in values.items()}


def table(benches: list[Bench], args: argparse.Namespace) -> str:
    names = [b.name for b in benches]
    train = {b.name: b.train_ms for b in benches}
    pred = {b.name: b.predict_ms for b in benches}
    ref = BASELINE if BASELINE in names else names[0]
    train_ratio, pred_ratio = _ratios(train, ref), _ratios(pred, ref)
    tokens = args.batch * args.tokens
    lines = [
        f"| method | train step ms (min–max) | train × {ref} | predict ms (min–max) | predict × {ref} | "
        "predict tokens/s | train peak MiB | predict peak MiB | post-hoc s (once) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for b in benches:
        t, p = b.train_ms, b.predict_ms
        lines.append(
            f"| {b.name} | {statistics.median(t):.1f} ({min(t):.1f}–{max(t):.1f}) | {train_ratio[b.name]:.2f} | "
            f"{statistics.median(p):.1f} ({min(p):.1f}–{max(p):.1f}) | {pred_ratio[b.name]:.2f} | "
            f"{tokens / (statistics.median(p) / 1e3):.0f} | {statistics.median(b.train_mib):.0f} | "
            f"{statistics.median(b.predict_mib):.0f} | {b.posthoc_s:.2f} |"
        )
    return "\n".join(lines)


def checks(benches: list[Bench]) -> list[str]:
    """The issue's targets, where the methods they compare were measured."""
    pred = {b.name: b.predict_ms for b in benches}
    out: list[str] = []
    if {"polar+vbll", BASELINE} <= pred.keys():
        r = _ratios(pred, BASELINE)["polar+vbll"]
        out.append(f"- PoLAR + VBLL predict / LoRA + MLE = {r:.3f} (target ≤ 1.03): {'met' if r <= 1.03 else 'MISSED'}")
    if "polar+vbll" in pred:
        rel = _ratios(pred, "polar+vbll")
        for name, target in (("lora+blob", 8.0), ("lora+mc_dropout", 8.0), ("lora+ensemble", 2.5)):
            if name in rel:
                ok = "met" if rel[name] >= target else "MISSED"
                out.append(f"- {name} predict / PoLAR + VBLL = {rel[name]:.2f} (target ≥ {target:g}): {ok}")
    return out


def header(args: argparse.Namespace, malloc_fixed: bool) -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    memory = "torch.cuda.max_memory_allocated" if args.device.startswith("cuda") else (
        "VmHWM growth (clear_refs), mmap threshold 64 KiB" if malloc_fixed else "VmHWM growth (clear_refs)"
    )
    backbone = {"minilm": "MiniLM (all-MiniLM-L6-v2)", "smollm2": "SmolLM2-135M (packaged GGUF, dequantized)"}.get(
        args.backbone, f"random Llama, shape {args.shape}")
    return (
        f"{backbone}, {args.dtype}, device {args.device}, B={args.batch}, L={args.tokens}, rounds={args.rounds} "
        f"(+1 warm-up), threads={torch.get_num_threads()}, torch {torch.__version__}, {platform.machine()}; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; memory: {memory}"
    )


# -- main ------------------------------------------------------------------------------------------
def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", choices=["minilm", "smollm2", "random"], default="minilm")
    parser.add_argument("--shape", default="llama-3.1-8b", help=f"with --backbone random: {', '.join(SHAPES)}")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default=None,
                        help="default: float32 for minilm, bfloat16 for random")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--methods", nargs="+", default=None, choices=ALL_METHODS, help="default: all")
    args = parser.parse_args(argv)
    if args.dtype is None:
        args.dtype = "bfloat16" if args.backbone == "random" else "float32"
    if args.rounds < 1 or args.batch < 1 or args.tokens < 2:
        parser.error(f"need --rounds >= 1, --batch >= 1, --tokens >= 2; got {args.rounds}, {args.batch}, {args.tokens}")
    return args


def main(argv: Sequence[str] | None = None) -> str:
    """Run the benchmark, print the header, the Markdown table and the target checks; return them."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parse(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    malloc_fixed = fix_malloc_threshold() if not args.device.startswith("cuda") else False
    dtype = getattr(torch, args.dtype)
    names = [n for n in ALL_METHODS if args.methods is None or n in args.methods]
    backbone = build_backbone(args.backbone, args.shape, args.tokens, args.device, dtype)
    texts, labels, batch = make_batch(backbone, args.batch, args.tokens)
    from bayeshead.data import TextDataset

    data = TextDataset(texts, labels)
    benches = []
    for n in names:
        benches.append(build_bench(n, backbone, args.backbone, args, data))
        print(f"built {n} (post-hoc {benches[-1].posthoc_s:.1f} s)", file=sys.stderr, flush=True)
    for bench in benches:  # warm-up, not recorded
        train_step(bench, texts, labels, args.device)
        predict(bench, batch, args.device)
        bench.train_mib.clear()
        bench.predict_mib.clear()
    for r in range(args.rounds):
        order = list(benches)
        random.Random(r).shuffle(order)
        for bench in order:
            bench.train_ms.append(train_step(bench, texts, labels, args.device))
            bench.predict_ms.append(predict(bench, batch, args.device))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    report = "\n".join([header(args, malloc_fixed), "", table(benches, args), "", *checks(benches)])
    print(report, flush=True)
    return report


if __name__ == "__main__":
    main()
