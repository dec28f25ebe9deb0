"""Choose PoLAR's default Θ learning-rate ratio on validation data of two real corpora.

At a shared learning rate Adam moves each entry of Θ (r × r) and of LoRA's B (m × r) by about
the same amount per step, so at the start PoLAR's ΔW = (α/r)·U·Θ·Vᵀ grows about √(m/(3r)) times
slower in Frobenius norm than LoRA's (α/r)·B·A (A's rows have variance 1/(3n), so its singular
values are ≈ 1/√3; U, V are orthonormal). ``adapter.theta_lr_ratio`` trains Θ at a multiple of
the optimizer's lr (LoRA+, Hayou et al. 2024, does the same for B). This script fits the
``polar+vbll (s0=30)`` method of ``benchmarks/vbll-defaults.yaml`` (the quick suite's untuned
training) with each candidate ratio on the tweets and on the STS-B genre corpus
(``benchmarks/stsb_genre_files.py``) and scores the *validation* split only
(:func:`bayeshead.bench.tune_trial.run_trial`; the test and OOD splits are never built into the
trial data). Rule, fixed before the run: the ratio with the lowest validation NLL averaged over
both corpora and the seeds becomes the default; a best ratio at the edge of the grid extends it
(the first grid was 1, 4, 16; 64 then won, 256 did worse). Result: 64
(``benchmarks/results/vbll-defaults.md``).

    python benchmarks/stsb_genre_files.py --out outputs/stsb_genre
    python benchmarks/polar_theta_lr.py --genre outputs/stsb_genre --out outputs/polar_theta_lr   # 20 fits, ~20 min

The same check on a QA suite's tasks (the validation questions drawn from each task's training
split, the suite's formulation), e.g. SmolLM2 with PoLAR on its top two blocks:

    python benchmarks/polar_theta_lr.py --suite commonsense-cpu --tasks obqa arc_easy \
        --method polar_vbll --ratios 1 64 --out outputs/polar_theta_lr_smollm2

Each finished fit is appended to ``<out>/trials.jsonl``; a rerun skips the fits found there.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from bayeshead.bench.data import file_benchmark, qa_benchmark, tweet_benchmark
from bayeshead.bench.runner import method_config
from bayeshead.bench.suite import load_suite
from bayeshead.bench.tune_config import TuneConfig
from bayeshead.bench.tune_trial import ValidationData, run_trial

METHOD = "polar+vbll (s0=30)"


def corpora(genre_dir: Path, suite) -> dict[str, ValidationData]:  # noqa: ANN001
    """Training and validation splits of the tweets and of the genre corpus (test/OOD dropped)."""
    tweets = tweet_benchmark(suite.n_train, suite.n_val, suite.n_test, 0, suite.data_seed)
    genre = file_benchmark(
        genre_dir / "train.csv", val_path=genre_dir / "val.csv", test_path=genre_dir / "test.csv",
        seed=suite.data_seed, n_train=suite.n_train, n_val=suite.n_val, n_test=suite.n_test,
    )
    return {"tweets": ValidationData.from_bench(tweets), "stsb_genre": ValidationData.from_bench(genre)}


def qa_tasks(tasks: list[str], suite) -> dict[str, ValidationData]:  # noqa: ANN001
    """Training and validation questions of each QA task in the suite's formulation (no OOD)."""
    return {
        task: ValidationData.from_bench(qa_benchmark(
            task, n_train=suite.n_train, n_val=suite.n_val, n_test=suite.n_test, n_ood=0,
            seed=suite.data_seed, formulation=suite.data_formulation(task),
        ))
        for task in tasks
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genre", type=Path, help="folder written by stsb_genre_files.py (vbll-defaults)")
    parser.add_argument("--suite", default="vbll-defaults", help="suite whose method is fitted (default vbll-defaults)")
    parser.add_argument("--tasks", nargs="+", help="QA tasks of --suite to use instead of tweets + genre")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ratios", type=float, nargs="+", default=[1.0, 4.0, 16.0, 64.0, 256.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--method", default=METHOD, help=f"method of the suite (default {METHOD!r})")
    args = parser.parse_args()
    if not args.tasks and args.genre is None:
        parser.error("give --genre (tweets + genre corpus) or --tasks (QA tasks of --suite)")

    suite = load_suite(args.suite)
    method = next(m for m in suite.methods if m.name == args.method)
    data = qa_tasks(args.tasks, suite) if args.tasks else corpora(args.genre, suite)
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "trials.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    done = {(r["corpus"], r["ratio"], r["seed"]): r for r in records if r.get("method", METHOD) == args.method}
    for corpus, split in data.items():
        for ratio in args.ratios:
            for seed in args.seeds:
                if (corpus, ratio, seed) in done:
                    continue
                task = corpus if args.tasks else None
                config = method_config(suite, method, seed, [f"adapter.theta_lr_ratio={ratio!r}"], task)
                outcome = run_trial(config, split, TuneConfig())
                record = {"method": args.method, "corpus": corpus, "ratio": ratio, "seed": seed, **outcome.metrics,
                          "fit_seconds": round(outcome.fit_seconds, 1)}
                record.pop("reliability", None)
                done[(corpus, ratio, seed)] = record
                with log.open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
                print(f"{corpus} ratio {ratio:g} seed {seed}: val acc {record['acc']:.3f} ece {record['ece']:.3f} "
                      f"nll {record['nll']:.3f} ({record['fit_seconds']} s)", flush=True)

    print("\n| Θ lr ratio | corpus | val ACC | val ECE | val NLL |\n|---:|---|---:|---:|---:|")
    mean_nll = {}
    for ratio in args.ratios:
        per_corpus = []
        for corpus in data:
            rows = [done[(corpus, ratio, s)] for s in args.seeds]
            cells = [statistics.mean(r[k] for r in rows) for k in ("acc", "ece", "nll")]
            per_corpus.append(cells[2])
            print(f"| {ratio:g} | {corpus} | {cells[0]:.3f} | {cells[1]:.3f} | {cells[2]:.3f} |")
        mean_nll[ratio] = statistics.mean(per_corpus)
    print("\nmean validation NLL over corpora: " + ", ".join(f"{r:g}: {v:.4f}" for r, v in mean_nll.items()))
    print(f"chosen (lowest): {min(mean_nll, key=mean_nll.get):g}")


if __name__ == "__main__":
    main()
