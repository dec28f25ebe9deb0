"""Train-step cost with cached frozen layers (``backbone.cache_prefix``) against full depth.

SmolLM2-135M-Instruct (30 blocks, packaged GGUF ``smollm2-135m``), last-token features, a
deterministic head, LoRA (rank 8) on ``q_proj``/``v_proj``; batch B = 8 prompts of L = 64 tokens,
CPU. One step is the trainer's own mini-batch step (tokenize, features, head block, adapter block:
``Trainer._train_step``). Set-ups, measured side by side (each timed round runs one step of each,
in turn, so machine load affects them alike):

* ``full, LoRA on all 30 blocks``: the usual fine-tuning step;
* ``full, LoRA on top k``: adapters on the top k blocks only, every block run (k = 1, 2, 4);
* ``cached, LoRA on top k``: the same model with ``backbone.cache_prefix=true``: blocks 0..29-k read
  from the prefix cache (attached once, before the timing; its one-off cost is reported too).

Reports the median step time of each and the speed-ups of the cached steps over both full-depth
steps, with the load average before and after.

    python benchmarks/perf_prefix_cache.py [--threads 2] [--rounds 7] [--warmup 1] [--ks 1 2 4]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time

import torch

WORDS = (
    "the river carried small boats past old stone houses while children watched from the bridge and "
    "traders counted coins near the market where bread fish and apples were sold every morning"
).split()


def prompts(n: int, words: int = 60) -> list[str]:
    """n deterministic prompts of ``words`` words (about 64 tokens each after truncation)."""
    out = []
    for i in range(n):
        picked = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(words)]
        out.append(f"Question {i}: " + " ".join(picked) + "? Answer:")
    return out


def build(backbone, top_layers: int | None, cache_dir: str):
    from bayeshead.config import load_config
    from bayeshead.model import BayesianModel
    from bayeshead.training import Trainer

    sets = [
        "training.progress=false", "adapter.kind=lora", "adapter.rank=8", "adapter.target_modules=[q_proj, v_proj]",
        "head.kind=deterministic", f"backbone.cache_dir={cache_dir}",
    ]
    if top_layers is not None:
        sets.append(f"adapter.top_layers={top_layers}")
    config = load_config(overrides=sets)
    own = copy.deepcopy(backbone)
    own.config = own.config.model_copy(update={"cache_dir": cache_dir})
    torch.manual_seed(0)
    model = BayesianModel.from_config(config, num_outputs=2, backbone=own)
    return model, Trainer(model)


def timed_step(trainer, texts: list[str], labels: torch.Tensor) -> float:
    start = time.perf_counter()
    trainer._train_step(texts, labels, len(texts))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from bayeshead.backbones.huggingface import HuggingFaceBackbone
    from bayeshead.backbones.prefix_cache import enable_prefix_cache
    from bayeshead.config import BackboneConfig

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    backbone = HuggingFaceBackbone.from_config(
        BackboneConfig(name_or_path="smollm2-135m", pooling="last_token", max_length=args.length, padding_side="left")
    )
    print(f"loaded smollm2-135m in {time.perf_counter() - t0:.1f} s; torch threads {torch.get_num_threads()}")
    texts = prompts(args.batch)
    lengths = backbone.tokenize(texts)["attention_mask"].sum(1).tolist()
    labels = torch.tensor([i % 2 for i in range(args.batch)])
    cache_dir = tempfile.mkdtemp(prefix="bayeshead-perf-prefix-")

    setups: dict[str, tuple] = {"full, LoRA on all 30 blocks": build(backbone, None, cache_dir)}
    for k in args.ks:
        model, trainer = build(backbone, k, cache_dir)
        setups[f"full, LoRA on top {k}"] = (model, trainer)
        cached_model, cached_trainer = build(backbone, k, cache_dir)
        cache = enable_prefix_cache(cached_model.backbone, cache_dir)
        start = time.perf_counter()
        cache.attach(texts)
        print(f"k={k}: prefix cache of {args.batch} prompts written in {time.perf_counter() - start:.2f} s "
              f"(one-off; blocks 0..{29 - k})")
        setups[f"cached, LoRA on top {k}"] = (cached_model, cached_trainer)
    for model, _ in setups.values():
        model.train()

    times: dict[str, list[float]] = {name: [] for name in setups}
    for r in range(args.warmup + args.rounds):
        for name, (_, trainer) in setups.items():
            elapsed = timed_step(trainer, texts, labels)
            if r >= args.warmup:
                times[name].append(elapsed)
    load_after = os.getloadavg()

    median = {name: statistics.median(v) for name, v in times.items()}
    full_all = median["full, LoRA on all 30 blocks"]
    print(f"\nSmolLM2-135M, B={args.batch}, tokens per prompt {min(lengths)}-{max(lengths)}, "
          f"{args.rounds} interleaved rounds after {args.warmup} warm-up, {args.threads} threads")
    print(f"load average (1/5/15 min): before {load_before[0]:.1f}/{load_before[1]:.1f}/{load_before[2]:.1f}, "
          f"after {load_after[0]:.1f}/{load_after[1]:.1f}/{load_after[2]:.1f}; {os.cpu_count()} CPUs")
    print("\n| set-up | median step (s) | min-max (s) | speed-up vs full top-k | speed-up vs full all-30 |")
    print("|---|---|---|---|---|")
    for name, value in median.items():
        lo, hi = min(times[name]), max(times[name])
        vs_top = vs_all = ""
        if name.startswith("cached"):
            k = name.rsplit(" ", 1)[1]
            vs_top = f"{median[f'full, LoRA on top {k}'] / value:.1f}x"
            vs_all = f"{full_all / value:.1f}x"
        print(f"| {name} | {value:.3f} | {lo:.3f}-{hi:.3f} | {vs_top} | {vs_all} |")


if __name__ == "__main__":
    main()
