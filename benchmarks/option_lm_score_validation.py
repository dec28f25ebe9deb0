"""Does the option LM score help? Validation data only: MLE on ARC-Easy in the per-option
formulation (the commonsense-cpu suite's split, seed 0), fitted with and without
``backbone.option_lm_score``, scored on the validation questions (the test split is never read).

    python benchmarks/option_lm_score_validation.py [--task arc_easy] [--seed 0]

Needs the SmolLM2 package (see docs/causal-lms.md); about 1-2 minutes per fit on 2 cores once the
suite's prefix cache exists.
"""

from __future__ import annotations

import argparse

from bayeshead.bench.data import qa_benchmark
from bayeshead.bench.runner import method_config
from bayeshead.bench.suite import load_suite
from bayeshead.bench.tune_config import TuneConfig
from bayeshead.bench.tune_trial import ValidationData, run_trial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="arc_easy")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    suite = load_suite("commonsense-cpu")
    spec = suite.methods[0]  # mle
    data = ValidationData.from_bench(
        qa_benchmark(args.task, n_train=suite.n_train, n_val=suite.n_val, n_test=suite.n_test,
                     seed=suite.data_seed, formulation="options")
    )
    for flag in ("true", "false"):
        config = method_config(suite, spec, args.seed, [f"backbone.option_lm_score={flag}"], args.task)
        out = run_trial(config, data, TuneConfig())
        m = out.metrics
        print(f"option_lm_score={flag}: validation acc {m['acc']:.3f} nll {m['nll']:.3f} ece {m['ece']:.3f} "
              f"({out.fit_seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
