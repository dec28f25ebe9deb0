"""``bayeshead`` console script: ``list``, ``validate``, ``demo``, ``train``, ``bench run``,
``bench report`` (also ``report``), ``bench tune``, ``bench formulation``.

Bad arguments and invalid configs print the problem (no traceback) and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from bayeshead.errors import BayesheadError, UsageError
from bayeshead.registry import REGISTRIES

__all__ = ["main", "build_parser", "UsageError"]

EXIT_USAGE = 2


def format_validation_error(err: ValidationError) -> str:
    lines = [f"invalid config: {err.error_count()} problem(s)"]
    for item in err.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    families = [args.family] if args.family else list(REGISTRIES)
    for family in families:
        print(f"{family}:")
        for name, description in REGISTRIES[family].describe():
            print(f"  {name:<32} {description}")
        if not REGISTRIES[family].names():
            print("  (none)")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from bayeshead.config import load_config

    config = load_config(args.config, args.set)
    if args.deep:
        from bayeshead.cli.deep_check import deep_check

        summary = deep_check(config, trust_remote_code=args.trust_remote_code)
        print(config.model_dump_json(indent=2))
        print(summary)
        return 0
    if args.trust_remote_code:
        raise UsageError("--trust-remote-code goes with --deep (plain validate loads no backbone)")
    print(config.model_dump_json(indent=2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from bayeshead.cli.demo import run_demo

    run_demo(config_path=args.config, overrides=args.set, n_train=args.n_train, n_test=args.n_test, output=args.output)
    return 0


def _add_config_args(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("config", nargs=None if required else "?", help="experiment config (YAML or JSON)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a config value, e.g. --set training.epochs=3 (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bayeshead",
        description="Honest uncertainty for fine-tuned transformers: adapters x Bayesian heads.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("list", help="list every registered adapter, head, optimizer and task")
    p.add_argument("family", nargs="?", choices=list(REGISTRIES), help="only this registry")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("validate", help="validate a config file and print it fully resolved")
    _add_config_args(p, required=True)
    p.add_argument(
        "--deep",
        action="store_true",
        help="also load the backbone and build the model as train would: checks the device, the backbone path, "
        "max_length against the model's positions, the rank against the layer sizes and target modules "
        "that match no layer; prints the resolved config and a line starting 'ok:'",
    )
    from bayeshead.cli.preflight import TRUST_REMOTE_CODE_HELP

    p.add_argument("--trust-remote-code", action="store_true", help=f"with --deep: {TRUST_REMOTE_CODE_HELP}")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "demo",
        help="end-to-end example: train a head on the embedded MiniLM and tweet data, save, reload",
    )
    _add_config_args(p, required=False)
    p.add_argument("--n-train", type=int, default=600, help="training tweets (default 600)")
    p.add_argument("--n-test", type=int, default=300, help="test tweets (default 300)")
    p.add_argument("--output", default="outputs/demo", help="where the trained model is saved")
    p.set_defaults(func=cmd_demo)

    from bayeshead.cli.bench import add_bench_parsers, add_report_arguments
    from bayeshead.cli.train import add_train_arguments, cmd_train

    p = sub.add_parser(
        "train", help="train one configured model (resumable checkpoints; runs under torchrun), evaluate, save"
    )
    _add_config_args(p, required=False)
    add_train_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "bench",
        help="methods x tasks x seeds side by side: 'bench run SUITE' (the main job: quick), 'bench report DIR', "
        "'bench tune SUITE' (tuning on validation data), 'bench formulation SUITE' (letter, per-option, per-option + LM score; per task)",
    )
    add_bench_parsers(p)

    p = sub.add_parser("report", help="the same as 'bench report DIR'")
    add_report_arguments(p)
    return parser


def _legacy_bench(argv: list[str]) -> list[str]:
    """``bench --suite quick ...`` (no subcommand) means ``bench run --suite quick ...``."""
    if argv[:1] == ["bench"] and (len(argv) == 1 or argv[1] not in ("run", "report", "tune", "formulation", "-h", "--help")):
        return ["bench", "run", *argv[1:]]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_legacy_bench(list(sys.argv[1:] if argv is None else argv)))  # argparse itself exits 2 on bad arguments
    try:
        return int(args.func(args) or 0)
    except ValidationError as err:
        print(format_validation_error(err), file=sys.stderr)
    except BayesheadError as err:
        print(f"error: {err}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
