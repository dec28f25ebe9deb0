"""``bayeshead bench run`` / ``bayeshead bench report``: methods x tasks x seeds side by side.

    bayeshead bench run quick                             # the main job (tweets, MiniLM)
    bayeshead bench run quick --seeds 0 1 2 --out benchmarks/results/quick
    bayeshead bench run benchmarks/commonsense-cpu.yaml   # common-sense QA on MiniLM, CPU
    bayeshead bench run benchmarks/commonsense.yaml --model /models/llama-2-7b --load-in-8bit
    bayeshead bench run --data my.csv --text-field review --label-field stars [--val v.csv ...]
    bayeshead bench run benchmarks/stsb.yaml                  # STS-B sentence-pair regression
    bayeshead bench run my-regression.yaml --data pairs.jsonl --target-type regression --text-pair-field sentence2
    bayeshead bench report outputs/bench/quick            # rebuild tables/figures from run JSONs
    bayeshead bench tune quick --trials 20                # tune every method on validation data
    bayeshead bench run outputs/tune/quick/tuned.yaml     # ... then run the tuned suite (test data once)
    bayeshead bench formulation commonsense-cpu           # letter / per-option (+ LM score), per task, on validation

``bayeshead bench --suite quick`` (no subcommand) is read as ``bench run --suite quick``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from bayeshead.errors import UsageError

__all__ = [
    "add_bench_parsers",
    "add_report_arguments",
    "add_run_arguments",
    "add_tune_arguments",
    "add_formulation_arguments",
    "cmd_bench",
    "cmd_formulation",
    "cmd_report",
    "cmd_tune",
]


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("suite", nargs="?", help="built-in suite (quick), a file under benchmarks/ by name, or a suite YAML")
    p.add_argument("--suite", dest="suite_option", metavar="SUITE", help="the same as the positional SUITE")
    p.add_argument("--methods", nargs="+", metavar="NAME", help="run only these methods of the suite")
    p.add_argument("--tasks", nargs="+", metavar="TASK", help="run only these QA tasks of the suite")
    p.add_argument("--seeds", nargs="+", type=int, metavar="SEED", help="seeds (default: the suite's)")
    p.add_argument("--out", help="output directory (default outputs/bench/<suite>)")
    p.add_argument("--resume", action="store_true", help="keep finished runs found in --out; run the rest")
    _add_setup_arguments(p)
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.set_defaults(func=cmd_bench)


def _add_setup_arguments(p: argparse.ArgumentParser) -> None:
    """Overrides, the backbone and the data: shared by ``bench run`` and ``bench tune``."""
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override for every method")
    p.add_argument("--model", help="backbone: a local model folder or hub name (sets backbone.name_or_path)")
    p.add_argument("--load-in-8bit", action="store_true", help="8-bit backbone weights (bitsandbytes, GPU only)")
    from bayeshead.cli.preflight import TRUST_REMOTE_CODE_HELP

    p.add_argument("--trust-remote-code", action="store_true", help=TRUST_REMOTE_CODE_HELP)
    for name, help_text in (
        ("--n-train", "training examples"),
        ("--n-val", "validation examples"),
        ("--n-test", "test examples"),
        ("--n-ood", "OOD examples per OOD set"),
    ):
        p.add_argument(
            name, type=int,
            help=f"{help_text}, a seeded subsample (the suite's data_seed) (default: the suite's {name[2:].replace('-', '_')}); "
            "with --data: at most this many rows of that split, the suite's limit applying unless given here",
        )
    byo = p.add_argument_group("bring your own data (CSV/TSV/JSONL)")
    byo.add_argument(
        "--data",
        help="training file with a text and a label column; each split is capped at the suite's n_train/n_val/"
        "n_test/n_ood (or --n-train ...) by a seeded subsample",
    )
    byo.add_argument("--text-field", default="text", help="text column (default: text)")
    byo.add_argument("--label-field", default="label", help="label column (default: label)")
    byo.add_argument("--val", help="validation file (default: 10%% of --data, seeded)")
    byo.add_argument("--test", help="test file (default: 20%% of --data, seeded)")
    byo.add_argument("--ood", help="out-of-distribution texts (the text column, and the pair column with --text-pair-field)")
    byo.add_argument(
        "--target-type", choices=["classification", "regression"],
        help="class labels or real-valued targets in the label column (default: what the suite's heads take)",
    )
    byo.add_argument("--text-pair-field", help="a second text column: each row is a text pair, tokenized as a pair")
    p.add_argument(
        "--data-dir",
        help="common-sense QA data folder (QA tasks; the quick suite's OOD set) "
        "(default: $BAYESHEAD_DATA or ../shared/data)",
    )


def add_tune_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("suite", nargs="?", help="built-in suite (quick), a file under benchmarks/ by name, or a suite YAML")
    p.add_argument("--suite", dest="suite_option", metavar="SUITE", help="the same as the positional SUITE")
    p.add_argument("--methods", nargs="+", metavar="NAME", help="tune only these methods of the suite")
    p.add_argument("--tasks", nargs="+", metavar="TASK", help="tune only these QA tasks of the suite")
    p.add_argument("--trials", type=int, metavar="N", help="trials per method (and task) (default: the suite's tune.n_trials)")
    p.add_argument(
        "--objective", choices=["nll", "ece", "nll+ece"], help="validation score minimised (default: the suite's, nll)"
    )
    p.add_argument("--seed", type=int, metavar="S", help="seed of the TPE sampler (default: the suite's tune.seed)")
    p.add_argument("--out", help="output directory (default outputs/tune/<suite>)")
    p.add_argument(
        "--resume", action="store_true",
        help="continue the studies found in --out (completed trials are kept; one cut off is run again)",
    )
    _add_setup_arguments(p)
    p.set_defaults(func=cmd_tune)


def add_formulation_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("suite", nargs="?", help="a QA suite: a file under benchmarks/ by name, or a suite YAML")
    p.add_argument("--suite", dest="suite_option", metavar="SUITE", help="the same as the positional SUITE")
    p.add_argument("--method", help="the reference method fitted in each formulation (default: the suite's first)")
    p.add_argument("--tasks", nargs="+", metavar="TASK", help="only these QA tasks of the suite")
    p.add_argument(
        "--candidates", nargs="+", choices=["letter", "options", "options_lm_score"], metavar="FORMULATION",
        help="the formulations fitted (letter, options, options_lm_score; default: all three, options_lm_score "
        "only with a causal LM)",
    )
    p.add_argument("--objective", choices=["nll", "ece", "nll+ece"], default="nll", help="validation score minimised")
    p.add_argument("--out", help="output directory (default outputs/formulation/<suite>)")
    _add_setup_arguments(p)
    p.set_defaults(func=cmd_formulation)


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", help="folder holding run JSONs (searched recursively)")
    p.add_argument("--out", help="where to write the report (default: the runs folder)")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.add_argument(
        "--baseline",
        metavar="METHOD",
        help="the method every paired difference is taken against (default: each task's first trained method)",
    )
    p.set_defaults(func=cmd_report)


def add_bench_parsers(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="bench_command", metavar="{run,report,tune,formulation}")
    sub.required = True
    add_run_arguments(
        sub.add_parser("run", help="train and evaluate every method x task x seed of a suite; write the report")
    )
    add_report_arguments(
        sub.add_parser("report", help="rebuild the tables and figures of a bench output folder from its run JSONs")
    )
    add_tune_arguments(
        sub.add_parser(
            "tune",
            help="search each method's options on validation data (same budget for all); write a tuned suite YAML",
        )
    )
    add_formulation_arguments(
        sub.add_parser(
            "formulation",
            help="choose each QA task's formulation (letter, options, options_lm_score) on validation data; write the suite with it",
        )
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


def suite_target_type(suite, overrides: list[str]) -> str:  # noqa: ANN001
    """What the suite's heads take: "regression" when every method's head is a regression head,
    "classification" when none is; a mix is an error (one data file cannot serve both)."""
    from bayeshead.bench.runner import method_config
    from bayeshead.registry import HEADS

    kinds = {
        HEADS.get(method_config(suite, m, suite.seeds[0], overrides).head.kind).task_type for m in suite.methods
    }
    if len(kinds) > 1:
        raise UsageError(
            f"the suite {suite.name!r} mixes regression and classification heads; give --target-type, or run "
            "the two kinds of methods as separate suites (--methods)"
        )
    return kinds.pop()


def _load_data(args: argparse.Namespace, suite):  # noqa: ANN001, ANN202
    """One BenchData per QA task of the suite, or the tweets / STS-B / your own file."""
    from bayeshead.bench.data import file_benchmark, qa_benchmark, stsb_benchmark, tweet_benchmark

    if args.data:
        if suite.tasks:
            raise UsageError(f"--data replaces the data of a suite without tasks; {suite.name!r} runs tasks {suite.tasks}")
        target_type = getattr(args, "target_type", None) or suite_target_type(suite, _overrides(args))
        return [
            file_benchmark(
                args.data, text_field=args.text_field, label_field=args.label_field,
                val_path=args.val, test_path=args.test, ood_path=args.ood, seed=suite.data_seed,
                target_type=target_type, text_pair_field=getattr(args, "text_pair_field", None),
                n_train=suite.n_train, n_val=suite.n_val, n_test=suite.n_test, n_ood=suite.n_ood,
            )
        ]
    if args.val or args.test or args.ood:
        raise UsageError("--val, --test and --ood go with --data (your own training file)")
    if getattr(args, "text_pair_field", None) or getattr(args, "target_type", None):
        raise UsageError("--target-type and --text-pair-field go with --data (your own training file)")
    data_dir = _data_dir(args)
    if suite.dataset in ("stsb", "stsb_classes"):
        target = "classification" if suite.dataset == "stsb_classes" else "regression"
        return [
            stsb_benchmark(
                suite.n_train, suite.n_val, suite.n_test, suite.n_ood, suite.data_seed, data_dir, target_type=target
            )
        ]
    if suite.tasks:
        return [
            qa_benchmark(
                task, n_train=suite.n_train, n_val=suite.n_val, n_test=suite.n_test, n_ood=suite.n_ood,
                ood_tasks=suite.ood_tasks.get(task, []), seed=suite.data_seed, data_dir=data_dir,
                formulation=suite.data_formulation(task),
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
    if getattr(args, "trust_remote_code", False):
        extra.append("backbone.trust_remote_code=true")
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
        suite = suite.updated(updates)
    overrides = _overrides(args)
    from bayeshead.cli.preflight import check_backbone, check_trust_remote_code

    for task in suite.tasks or [None]:  # validate every config before spending minutes on the first
        configs = [method_config(suite, method, suite.seeds[0], overrides, task) for method in suite.methods]
        if suite.zero_shot:
            from bayeshead.bench.zero_shot import zero_shot_config

            configs.append(zero_shot_config(suite, task, overrides))
        for config in configs:
            check_trust_remote_code(config, getattr(args, "trust_remote_code", False))
            check_backbone(config)
    ctx = init_distributed()
    out = Path(args.out or f"outputs/bench/{suite.name}")
    datasets = _load_data(args, suite)

    def say(line: str) -> None:
        if ctx.is_main:
            print(line, flush=True)

    rows = f"{len(suite.methods)} methods" + (f" + {len(suite.zero_shot)} zero-shot rows" if suite.zero_shot else "")
    shape = f"{rows} x {len(suite.tasks)} tasks" if suite.tasks else rows
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
        written = write_report(runs, Path(args.out or args.runs), figures=not args.no_figures, baseline=args.baseline)
    except ValueError as err:
        raise UsageError(str(err)) from None
    print(markdown_table(aggregate(runs)))
    print(f"wrote {written['markdown']} and {written['csv']}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from bayeshead.bench.runner import method_config
    from bayeshead.bench.suite import load_suite
    from bayeshead.bench.tune import tune_suite

    suite = load_suite(_suite_name(args)).select(args.methods).select_tasks(args.tasks)
    updates = {k: getattr(args, k) for k in ("n_train", "n_val", "n_test", "n_ood") if getattr(args, k) is not None}
    tune = {"n_trials": args.trials, "objective": args.objective, "seed": args.seed}
    tune = {k: v for k, v in tune.items() if v is not None}
    if tune:
        updates["tune"] = {**suite.tune.model_dump(), **tune}
    if updates:
        suite = suite.updated(updates)
    overrides = _overrides(args)
    for task in suite.tasks or [None]:  # every base config and space before the first trial
        for method in suite.methods:
            suite.tune.space_for(method.name, method_config(suite, method, suite.seeds[0], overrides, task))
    out = Path(args.out or f"outputs/tune/{suite.name}")
    datasets = _load_data(args, suite)
    print(
        f"suite {suite.name}: tuning {len(suite.methods)} methods, {suite.tune.n_trials} trials each, objective "
        f"validation {suite.tune.objective}, sampler seed {suite.tune.seed}; {torch.get_num_threads()} threads",
        flush=True,
    )
    for data in datasets:
        print(f"data: {data.description} (tuning reads train and val only)", flush=True)
    start = time.perf_counter()
    written = tune_suite(suite, datasets, out, overrides, resume=args.resume, log=lambda line: print(line, flush=True))
    print()
    print(written["markdown"].read_text(encoding="utf-8").split("\n## ")[0].rstrip())
    print()
    data_args = " --data ..." if args.data else ""
    print(f"total {time.perf_counter() - start:.0f}s; every trial: {written['json']} and {written['markdown']}")
    print(f"tuned suite: {written['tuned']}; run it (the test split is read there): "
          f"bayeshead bench run {written['tuned']}{data_args}")
    return 0


def cmd_formulation(args: argparse.Namespace) -> int:
    from bayeshead.bench.data import qa_benchmark
    from bayeshead.bench.formulation import choose_formulations, write_formulations
    from bayeshead.bench.suite import load_suite

    suite = load_suite(_suite_name(args)).select_tasks(args.tasks)
    updates = {k: getattr(args, k) for k in ("n_train", "n_val", "n_test", "n_ood") if getattr(args, k) is not None}
    if updates:
        suite = suite.updated(updates)
    if args.data or not suite.tasks:
        raise UsageError("bench formulation chooses between the formulations of QA tasks; give a suite with tasks:")
    data_dir = _data_dir(args)

    def load(task: str, formulation: str):  # noqa: ANN202
        return qa_benchmark(
            task, n_train=suite.n_train, n_val=suite.n_val, n_test=suite.n_test, n_ood=suite.n_ood,
            ood_tasks=suite.ood_tasks.get(task, []), seed=suite.data_seed, data_dir=data_dir, formulation=formulation,
        )

    print(f"suite {suite.name}: choosing the formulation of {suite.tasks} on validation data "
          f"({args.objective}); {torch.get_num_threads()} threads", flush=True)
    start = time.perf_counter()
    result = choose_formulations(
        suite, load, method=args.method, candidates=args.candidates, overrides=_overrides(args), objective=args.objective,
        log=lambda line: print(line, flush=True),
    )
    written = write_formulations(suite, result, Path(args.out or f"outputs/formulation/{suite.name}"))
    print()
    print(written["markdown"].read_text(encoding="utf-8"))
    print(f"total {time.perf_counter() - start:.0f}s; suite with the chosen formulations: {written['suite']}; "
          f"run it: bayeshead bench run {written['suite']}")
    return 0
