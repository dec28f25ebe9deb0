"""Mean top-label confidence next to accuracy, per method, from a folder of run JSONs: the
over-/under-confidence reading of ``benchmarks/results/vbll-defaults.md`` (mean confidence is
derived from each run's reliability bins: Σ_b n_b·conf_b / Σ_b n_b).

    python benchmarks/mean_confidence.py benchmarks/results/vbll-defaults/stsb_genre
"""

from __future__ import annotations

import argparse
import statistics

from bayeshead.bench.report import load_runs


def mean_confidence(record: dict) -> float:
    bins = record["metrics"]["reliability"]
    n = sum(bins["counts"])
    return sum(c * x for c, x in zip(bins["counts"], bins["mean_confidence"], strict=True) if c) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", help="folder of run JSONs (searched recursively)")
    args = parser.parse_args()
    rows: dict[str, list[tuple[float, ...]]] = {}
    for run in load_runs(args.runs):
        m = run["metrics"]
        rows.setdefault(run["method"], []).append(
            (m["acc"], m["ece"], m["nll"], mean_confidence(run), m.get("ood_auroc_maxprob", float("nan")))
        )
    print("| method | ACC | ECE | NLL | mean conf | OOD AUROC | seeds |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for method, values in rows.items():
        cells = [
            f"{statistics.mean(c):.3f} ± {statistics.stdev(c) if len(c) > 1 else 0.0:.3f}" for c in zip(*values, strict=True)
        ]
        print(f"| {method} | {' | '.join(cells)} | {len(values)} |")


if __name__ == "__main__":
    main()
