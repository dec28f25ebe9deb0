"""``bayeshead bench``: methods side by side on one data set, one table, one PNG per method.

    bayeshead bench --suite quick                         # the main job (tweets, MiniLM)
    bayeshead bench --suite quick --seeds 0 1 2 --out benchmarks/results/quick
    bayeshead bench --data my.csv --text-field review --label-field stars [--val v.csv --test t.csv --ood o.csv]
    bayeshead report outputs/bench/quick                  # rebuild tables/figures from run JSONs
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from bayeshead.cli.main import UsageError

__all__ = ["add_bench_arguments", "cmd_bench", "cmd_report"]


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", default="quick", help="built-in suite name (quick) or a suite YAML file")
    p.add_argument("--methods", nargs="+", metavar="NAME", help="run only these methods of the suite")
    p.add_argument("--seeds", nargs="+", type=int, metavar="SEED", help="seeds (default: the suite's)")
    p.add_argument("--out", help="output directory (default outputs/bench/<suite>)")
    p.add_argument("--resume", action="store_true", help="keep finished runs found in --out; run the rest")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override for every method")
    for name, help_text in (
        ("--n-train", "training examples of the default tweet data"),
        ("--n-val", "validation examples"),
        ("--n-test", "test examples"),
        ("--n-ood", "OOD texts"),
    ):
        p.add_argument(name, type=int, help=f"{help_text} (default: the suite's)")
    byo = p.add_argument_group("bring your own data (CSV/TSV/JSONL)")
    byo.add_argument("--data", help="training file with a text and a label column")
    byo.add_argument("--text-field", default="text", help="text column (default: text)")
    byo.add_argument("--label-field", default="label", help="label column (default: label)")
    byo.add_argument("--val", help="validation file (default: 10%% of --data, seeded)")
    byo.add_argument("--test", help="test file (default: 20%% of --data, seeded)")
    byo.add_argument("--ood", help="out-of-distribution texts (the text column only)")
    p.add_argument("--data-dir", help="common-sense QA data folder for the default OOD set (default: $BAYESHEAD_DATA or ../shared/data)")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")


def _load_data(args: argparse.Namespace, suite):  # noqa: ANN001, ANN202
    from bayeshead.bench.data import file_benchmark, tweet_benchmark

    if args.data:
        return file_benchmark(
            args.data, text_field=args.text_field, label_field=args.label_field,
            val_path=args.val, test_path=args.test, ood_path=args.ood, seed=suite.data_seed,
        )
    if args.val or args.test or args.ood:
        raise UsageError("--val, --test and --ood go with --data (your own training file)")
    data_dir = Path(args.data_dir) if args.data_dir else None
    if data_dir is not None and not data_dir.is_dir():
        raise UsageError(f"--data-dir {data_dir} is not a directory")
    return tweet_benchmark(suite.n_train, suite.n_val, suite.n_test, suite.n_ood, suite.data_seed, data_dir)


def cmd_bench(args: argparse.Namespace) -> int:
    from bayeshead.bench.report import aggregate, markdown_table, write_report
    from bayeshead.bench.runner import method_config, run_suite
    from bayeshead.bench.suite import load_suite
    from bayeshead.training.distributed import init_distributed

    suite = load_suite(args.suite).select(args.methods)
    updates = {k: getattr(args, k) for k in ("n_train", "n_val", "n_test", "n_ood") if getattr(args, k) is not None}
    if args.seeds:
        updates["seeds"] = args.seeds
    if updates:
        suite = type(suite).model_validate({**suite.model_dump(), **updates})
    for method in suite.methods:  # validate every config before spending minutes on the first
        method_config(suite, method, suite.seeds[0], args.set)
    ctx = init_distributed()
    out = Path(args.out or f"outputs/bench/{suite.name}")
    data = _load_data(args, suite)

    def say(line: str) -> None:
        if ctx.is_main:
            print(line, flush=True)

    say(f"suite {suite.name}: {len(suite.methods)} methods x seeds {suite.seeds}; {torch.get_num_threads()} threads")
    say(f"data: {data.description}")
    start = time.perf_counter()
    runs = run_suite(suite, data, out, args.set, skip_existing=args.resume, log=say, is_main=ctx.is_main)
    if ctx.is_main:
        written = write_report(runs, out, figures=not args.no_figures)
        print()
        print(markdown_table(aggregate(runs)))
        print()
        print("OOD AUROC scores OOD texts by 1 − max probability (OOD = positive class).")
        print(f"total {time.perf_counter() - start:.0f}s; tables: {written['markdown']} and {written['csv']}")
        figures = [p for k, p in written.items() if k.startswith("reliability:")]
        if figures:
            print(f"reliability diagrams: {len(figures)} PNGs in {figures[0].parent}; comparison: {written['comparison']}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bayeshead.bench.report import aggregate, load_runs, markdown_table, write_report

    try:
        runs = load_runs(args.runs)
    except ValueError as err:
        raise UsageError(str(err)) from None
    written = write_report(runs, Path(args.out or args.runs), figures=not args.no_figures)
    print(markdown_table(aggregate(runs)))
    print(f"wrote {written['markdown']} and {written['csv']}")
    return 0
