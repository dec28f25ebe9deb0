"""``bayeshead train``: train one configured model, evaluate it, save it; resumable, DDP-ready.

    bayeshead train exp.yaml --output runs/exp --checkpoint-dir runs/exp/ckpt --set training.checkpoint_every=50
    bayeshead train exp.yaml --output runs/exp --checkpoint-dir runs/exp/ckpt --resume   # after a crash
    torchrun --nproc_per_node=2 -m bayeshead.cli.main train exp.yaml --output runs/exp   # DDP (gloo on CPU)

Data: the tweet-sentiment default (``--n-train``/``--n-val``/``--n-test``) or your own file
(``--data`` with ``--text-field``/``--label-field``, optional ``--val``/``--test``; real-valued
targets with ``--target-type regression`` (the default for a regression head) and text pairs with
``--text-pair-field``).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from bayeshead.errors import UsageError, UserInputError

__all__ = ["add_train_arguments", "cmd_train"]


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", required=True, help="where the trained model and metrics.json are written")
    p.add_argument("--checkpoint-dir", help="write checkpoints here (with training.checkpoint_every)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --checkpoint-dir")
    p.add_argument("--data", help="training file (CSV/TSV/JSONL) with a text and a label column")
    p.add_argument("--text-field", default="text")
    p.add_argument("--label-field", default="label")
    p.add_argument(
        "--target-type", choices=["classification", "regression"],
        help="class labels or real-valued targets in the label column (default: what head.kind takes)",
    )
    p.add_argument("--text-pair-field", help="a second text column: each row is a text pair, tokenized as a pair")
    p.add_argument("--val", help="validation file (default: 10%% of --data)")
    p.add_argument("--test", help="test file (default: 20%% of --data)")
    p.add_argument("--n-train", type=int, default=800, help="tweets to train on when no --data (default 800)")
    p.add_argument("--n-val", type=int, default=200)
    p.add_argument("--n-test", type=int, default=500)
    from bayeshead.cli.preflight import TRUST_REMOTE_CODE_HELP

    p.add_argument("--trust-remote-code", action="store_true", help=TRUST_REMOTE_CODE_HELP)


def cmd_train(args: argparse.Namespace) -> int:
    from bayeshead.bench.data import file_benchmark, tweet_benchmark
    from bayeshead.config import load_config
    from bayeshead.evaluation import evaluate, predict_dataset
    from bayeshead.methods import build_method
    from bayeshead.training.distributed import init_distributed

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = load_config(args.config, args.set)
    if args.resume and not args.checkpoint_dir:
        raise UsageError("--resume needs --checkpoint-dir (the folder the interrupted run wrote to)")
    if args.checkpoint_dir and config.training.checkpoint_every is None:
        config.training.checkpoint_every = 50
    from bayeshead.cli import preflight

    preflight.check_trust_remote_code(config, getattr(args, "trust_remote_code", False))
    preflight.check_writable_folder(args.output, "--output")
    preflight.check_writable_folder(args.checkpoint_dir, "--checkpoint-dir")
    preflight.check_backbone(config)
    if args.data:
        from bayeshead.registry import HEADS

        target_type = args.target_type or HEADS.get(config.head.kind).task_type
        data = file_benchmark(args.data, text_field=args.text_field, label_field=args.label_field,
                              val_path=args.val, test_path=args.test, seed=config.training.seed,
                              target_type=target_type, text_pair_field=args.text_pair_field)
    else:
        if args.val or args.test or args.target_type or args.text_pair_field:
            raise UsageError("--val, --test, --target-type and --text-pair-field go with --data (your own training file)")
        data = tweet_benchmark(args.n_train, args.n_val, args.n_test, 0, seed=config.training.seed)
    preflight.check_warmup(config, len(data.train))
    if len(data.test) == 0:
        raise UserInputError("the test split is empty; give a --test file with rows, or more rows in --data")
    ctx = init_distributed()
    preflight.seed_everything(config.training.seed)  # before anything random is built
    method = build_method(config, num_outputs=data.num_outputs)
    preflight.check_positions(method.model.backbone, config.backbone.max_length)
    if ctx.is_main:
        print(f"data: {data.description}")
    start = time.perf_counter()
    history = method.fit(data.train, data.val, checkpoint_dir=args.checkpoint_dir, resume=args.resume)
    seconds = time.perf_counter() - start
    if not ctx.is_main:
        return 0
    test = predict_dataset(
        method.predict, data.test.texts, config.evaluation.batch_size, config.training.seed,
        text_pair=data.test.text_pair,
    )
    metrics = evaluate(test, data.test.labels, None, config.evaluation.ece_bins)
    metrics.pop("reliability", None)
    metrics.pop("calibration_curve", None)
    out = method.save_pretrained(Path(args.output))
    (out / "metrics.json").write_text(
        json.dumps({"train_seconds": seconds, "steps": len(history), "posthoc": method.posthoc, **metrics}, indent=1),
        encoding="utf-8",
    )
    print(f"{len(history)} steps in {seconds:.1f}s on {ctx.world_size} process(es); test: "
          + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    print(f"saved to {out}")
    return 0
