"""VBLL prior defaults on frozen MiniLM features: head-only fits with the real trainer.

Compares, on each corpus cached by ``benchmarks/vbll_defaults_features.py`` (800 train / 200 val /
400 test), the deterministic MLE head, the VBLL head with the quick suite's fixed settings
(s₀ = 30, mean_init_std 0.05, diagonal) and the VBLL head with ``prior_scale_rule=evidence``
(diagonal). Every head is trained by :func:`~bayeshead.training.feature_fit.fit_head_on_features`
with the quick suite's head settings (batch 16, head lr 1e-2, alternating mode), under two budgets
chosen without test labels: the quick suite's 2 epochs, and up to 50 epochs with early stopping on
validation NLL (patience 5, evaluated every epoch; the best validation state is kept). Test
metrics (ACC, ECE with 15 bins, NLL, mean top-label confidence) are mean ± std over the seeds.

    python benchmarks/vbll_defaults_features.py --out /tmp/vbd
    python benchmarks/vbll_defaults.py --features /tmp/vbd --seeds 0 1 2 > table.md
    python benchmarks/vbll_defaults.py --features /tmp/vbd --grid   # evidence vs validation NLL per κ
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import torch

from bayeshead.config import TrainingConfig
from bayeshead.heads.vbll_prior import laplace_log_evidence, prior_logit_std
from bayeshead.metrics.calibration import ece
from bayeshead.training.feature_fit import fit_head_on_features

_VBLL_DIAG = {"kind": "vbll_classification", "covariance": "diagonal"}
METHODS: dict[str, dict[str, Any]] = {
    "mle": {"kind": "deterministic"},
    "vbll (quick suite: s0=30)": {**_VBLL_DIAG, "prior_scale": 30.0, "mean_init_std": 0.05},
    "vbll (evidence)": {**_VBLL_DIAG, "prior_scale_rule": "evidence"},
}
BUDGETS: dict[str, dict[str, Any]] = {
    "2 epochs": {"epochs": 2},
    "early stop (val NLL)": {"epochs": 50, "early_stopping_patience": 5},
}


def run(head: dict[str, Any], data: dict[str, dict[str, torch.Tensor]], budget: dict[str, Any], seed: int) -> dict[str, float]:
    training = TrainingConfig(
        batch_size=16, head_lr=1e-2, mode="alternating", progress=False, seed=seed, **budget
    )
    torch.manual_seed(seed)
    fit = fit_head_on_features(
        head, data["train"]["x"], data["train"]["y"], training=training, val=(data["val"]["x"], data["val"]["y"])
    )
    fit.head.eval()
    with torch.no_grad():
        probs = fit.head.predict(data["test"]["x"]).probs
    y = data["test"]["y"]
    out = {
        "acc": float((probs.argmax(-1) == y).float().mean()),
        "ece": ece(probs, y),
        "nll": float(-probs.clamp_min(1e-12).log().gather(1, y[:, None]).mean()),
        "conf": float(probs.max(-1).values.mean()),
        "epochs": float(fit.history[-1]["epoch"]) + 1,
    }
    if hasattr(fit.head, "prior_var"):  # κ = √s·rms‖φ‖ on the training features
        out["prior_logit_std"] = prior_logit_std(fit.head.prior_var, data["train"]["x"])
    return out


def evidence_grid(data: dict[str, dict[str, torch.Tensor]], kappas: list[float]) -> None:
    """Laplace log evidence on all training features and the validation NLL of the MAP plug-in,
    per prior logit standard deviation κ (no test data)."""
    x, y = data["train"]["x"].double(), data["train"]["y"]
    vx, vy = data["val"]["x"].double(), data["val"]["y"]
    classes = int(y.max()) + 1
    mean_sq = float(x.pow(2).sum(-1).mean())
    print("\n| κ | log evidence (train) | val NLL of MAP |\n|---:|---:|---:|")
    for kappa in kappas:
        value, weight = laplace_log_evidence(x, y, classes, kappa**2 / mean_sq)
        nll = float(torch.nn.functional.cross_entropy(vx @ weight.T, vy))
        print(f"| {kappa:g} | {value:.1f} | {nll:.3f} |", flush=True)


def fmt(values: list[float], digits: int = 3) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features", type=Path, default=Path("/tmp/vbd"))
    parser.add_argument("--corpora", nargs="+", default=["tweets", "stsb_genre"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--grid", action="store_true", help="print the evidence grid instead of the fits")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for corpus in args.corpora:
        data = torch.load(args.features / f"{corpus}.pt")
        norm = float(data["train"]["x"].pow(2).sum(-1).mean().sqrt())
        print(f"\n### {corpus} (rms ‖φ‖ = {norm:.2f}, d = {data['train']['x'].shape[1]})\n")
        if args.grid:
            evidence_grid(data, [0.5, 1, 2, 4, 8, 16, 32])
            continue
        print("| budget | head | ACC ↑ | ECE ↓ | NLL ↓ | mean conf | prior logit sd | epochs |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for budget_name, budget in BUDGETS.items():
            for name, head in METHODS.items():
                rows = [run(head, data, budget, seed) for seed in args.seeds]
                col = {k: [r[k] for r in rows] for k in rows[0]}
                sd = fmt(col["prior_logit_std"], 2) if "prior_logit_std" in col else "–"
                print(
                    f"| {budget_name} | {name} | {fmt(col['acc'])} | {fmt(col['ece'])} | {fmt(col['nll'])} | "
                    f"{fmt(col['conf'])} | {sd} | {fmt(col['epochs'], 0)} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
