"""``bayeshead bench run`` / ``bayeshead bench report``: methods x tasks x seeds side by side.

    bayeshead bench run quick                             # the main job (tweets, MiniLM)
    bayeshead bench run quick --seeds 0 1 2 --out benchmarks/results/quick
    bayeshead bench run benchmarks/commonsense-cpu.yaml   # common-sense QA on MiniLM, CPU
    bayeshead bench run benchmarks/commonsense.yaml --model /models/llama-2-7b --load-in-8bit
    bayeshead bench run --data my.csv --text-field review --label-field stars [--val v.csv ...]
    bayeshead bench report outputs/bench/quick            # rebuild tables/figures from run JSONs

``bayeshead bench --suite quick`` (no subcommand) is read as ``bench run --suite quick``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from bayeshead.errors import UsageError

__all__ = ["add_bench_parsers", "add_report_arguments", "add_run_arguments", "cmd_bench", "cmd_report"]


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("suite", nargs="?", help="built-in suite (quick), a file under benchmarks/ by name, or a suite YAML")
    p.add_argument("--suite", dest="suite_option", metavar="SUITE", help="the same as the positional SUITE")
    p.add_argument("--methods", nargs="+", metavar="NAME", help="run only these methods of the suite")
    p.add_argument("--tasks", nargs="+", metavar="TASK", help="run only these QA tasks of the suite")
    p.add_argument("--seeds", nargs="+", type=int, metavar="SEED", help="seeds (default: the suite's)")
    p.add_argument("--out", help="output directory (default outputs/bench/<suite>)")
    p.add_argument("--resume", action="store_true", help="keep finished runs found in --out; run the rest")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override for every method")
    p.add_argument("--model", help="backbone: a local model folder or hub name (sets backbone.name_or_path)")
    p.add_argument("--load-in-8bit", action="store_true", help="8-bit backbone weights (bitsandbytes, GPU only)")
    for name, help_text in (
        ("--n-train", "training examples"),
        ("--n-val", "validation examples"),
        ("--n-test", "test examples"),
        ("--n-ood", "OOD examples per OOD set"),
    ):
        p.add_argument(name, type=int, help=f"{help_text} (default: the suite's)")
    byo = p.add_argument_group("bring your own data (CSV/TSV/JSONL)")
    byo.add_argument("--data", help="training file with a text and a label column")
    byo.add_argument("--text-field", default="text", help="text column (default: text)")
    byo.add_argument("--label-field", default="label", help="label column (default: label)")
    byo.add_argument("--val", help="validation file (default: 10%% of --data, seeded)")
    byo.add_argument("--test", help="test file (default: 20%% of --data, seeded)")
    byo.add_argument("--ood", help="out-of-distribution texts (the text column only)")
    p.add_argument(
        "--data-dir",
        help="common-sense QA data folder (QA tasks; the quick suite's OOD set) "
        "(default: $BAYESHEAD_DATA or ../shared/data)",
    )
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.set_defaults(func=cmd_bench)


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", help="folder holding run JSONs (searched recursively)")
    p.add_argument("--out", help="where to write the report (default: the runs folder)")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.set_defaults(func=cmd_report)


def add_bench_parsers(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="bench_command", metavar="{run,report}")
    sub.required = True
    add_run_arguments(
        sub.add_parser("run", help="train and evaluate every method x task x seed of a suite; write the report")
    )
    add_report_arguments(
        sub.add_parser("report", help="rebuild the tables and figures of a bench output folder from its run JSONs")
    )


def _suite_name(args: argparse.Namespace) -> str:
    if args.suite and args.suite_option and args.suite != args.suite_option:
        raise UsageError(f"two suites given: {args.suite!r} and --suite {args.suite_option!r}; give one")
    return args.suite or args.suite_option or "quick"


def _data_dir(args: argparse.Namespace) -> Path | None:
    data_dir = Path(args.data_dir) if args.data_dir else None
    if data_dir is not None and not data_dir.is_dir():
        raise UsageError(f"--data-dir {data_dir} is not a directory")
    return data_dir


def _load_data(args: argparse.Namespace, suite):  # noqa: ANN001, ANN202
    """One BenchData per QA task of the suite, or the tweets / your own file."""
    from bayeshead.bench.data import file_benchmark, qa_benchmark, tweet_benchmark

    if args.data:
        if suite.tasks:
            raise UsageError(f"--data replaces the data of a suite without tasks; {suite.name!r} runs tasks {suite.tasks}")
        return [
            file_benchmark(
                args.data, text_field=args.text_field, label_field=args.label_field,
                val_path=args.val, test_path=args.test, ood_path=args.ood, seed=suite.data_seed,
            )
        ]
    if args.val or args.test or args.ood:
        raise UsageError("--val, --test and --ood go with --data (your own training file)")
    data_dir = _data_dir(args)
    if suite.tasks:
        return [
            qa_benchmark(
                task, n_train=suite.n_train, n_val=suite.n_val, n_test=suite.n_test, n_ood=suite.n_ood,
                ood_tasks=suite.ood_tasks.get(task, []), seed=suite.data_seed, data_dir=data_dir,
            )
            for task in suite.tasks
        ]
    missing = [k for k in ("n_train", "n_test", "n_ood") if getattr(suite, k) is None]
    if missing:
        raise UsageError(f"the tweet data needs numbers for {missing} (null means 'all' only for QA tasks)")
    return [tweet_benchmark(suite.n_train, suite.n_val, suite.n_test, suite.n_ood, suite.data_seed, data_dir)]


def _overrides(args: argparse.Namespace) -> list[str]:
    extra = list(args.set)
    if args.model:
        extra.append(f"backbone.name_or_path={args.model}")
    if args.load_in_8bit:
        extra.append("backbone.load_in_8bit=true")
    return extra


def cmd_bench(args: argparse.Namespace) -> int:
    from bayeshead.bench.report import aggregate, markdown_table, write_report
    from bayeshead.bench.runner import method_config, run_suite
    from bayeshead.bench.suite import load_suite
    from bayeshead.training.distributed import init_distributed

    suite = load_suite(_suite_name(args)).select(args.methods).select_tasks(args.tasks)
    updates = {k: getattr(args, k) for k in ("n_train", "n_val", "n_test", "n_ood") if getattr(args, k) is not None}
    if args.seeds:
        updates["seeds"] = args.seeds
    if updates:
        suite = type(suite).model_validate({**suite.model_dump(), **updates})
    overrides = _overrides(args)
    for task in suite.tasks or [None]:  # validate every config before spending minutes on the first
        for method in suite.methods:
            method_config(suite, method, suite.seeds[0], overrides, task)
    ctx = init_distributed()
    out = Path(args.out or f"outputs/bench/{suite.name}")
    datasets = _load_data(args, suite)

    def say(line: str) -> None:
        if ctx.is_main:
            print(line, flush=True)

    shape = f"{len(suite.methods)} methods x {len(suite.tasks)} tasks" if suite.tasks else f"{len(suite.methods)} methods"
    say(f"suite {suite.name}: {shape} x seeds {suite.seeds}; {torch.get_num_threads()} threads")
    for data in datasets:
        say(f"data: {data.description}")
    start = time.perf_counter()
    runs = run_suite(suite, datasets, out, overrides, skip_existing=args.resume, log=say, is_main=ctx.is_main)
    if ctx.is_main:
        written = write_report(runs, out, figures=not args.no_figures)
        print()
        print(markdown_table(aggregate(runs)))
        print()
        if any(data.ood for data in datasets):
            print("OOD AUROC scores OOD texts by 1 − max probability (OOD = positive class).")
        print(f"total {time.perf_counter() - start:.0f}s; tables: {written['markdown']} and {written['csv']}")
        figures = [p for k, p in written.items() if k.startswith("reliability:")]
        comparisons = [str(p) for k, p in written.items() if k.startswith("comparison")]
        if figures:
            print(f"reliability diagrams: {len(figures)} PNGs under {out / 'reliability'}; comparison: {', '.join(comparisons)}")
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
