"""`bayeshead bench formulation`: each QA task's formulation chosen on validation data only, by
one reference method fitted in both formulations; the written suite runs as it stands."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from test_tune import Untouchable

from bayeshead.bench.data import qa_benchmark
from bayeshead.bench.formulation import choose_formulations, write_formulations
from bayeshead.bench.suite import SuiteConfig, load_suite
from bayeshead.bench.tune_trial import TrialOutcome
from bayeshead.cli.main import main
from bayeshead.errors import UserInputError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

_SUITE = {
    "name": "tiny-choice",
    "tasks": ["obqa", "winogrande_s"],
    "n_train": 12, "n_val": 6, "n_test": 6, "n_ood": 4,
    "base": ["backbone.max_length=48", "adapter.rank=2", "adapter.target_modules=[query]", "training.epochs=1",
             "training.batch_size=4", "training.progress=false"],
    "methods": [{"name": "mle", "overrides": ["adapter.kind=lora", "head.kind=deterministic"]},
                {"name": "vbll", "overrides": ["adapter.kind=lora", "head.kind=vbll_classification"]}],
}


def _load(task: str, formulation: str):
    data = qa_benchmark(task, n_train=12, n_val=6, n_test=6, data_dir=DATA, formulation=formulation)
    return dataclasses.replace(data, test=Untouchable(), ood_sets={}, records={})  # the test split is never read


def test_the_lower_validation_nll_wins_per_task_and_test_data_is_never_read(monkeypatch, tmp_path):
    seen = []

    def fake_trial(config, data, tune):
        seen.append((config.task.kind, config.task.formulation, config.head.kind, len(data.val)))
        # options wins OBQA, letter wins WinoGrande
        nll = {("obqa", "options"): 1.0, ("obqa", "letter"): 1.3,
               ("winogrande_s", "options"): 0.8, ("winogrande_s", "letter"): 0.7}[(config.task.kind, config.task.formulation)]
        return TrialOutcome(nll, {"nll": nll, "acc": 0.5, "ece": 0.1, "brier": 0.5}, 1.0, 0.5)

    monkeypatch.setattr("bayeshead.bench.formulation.run_trial", fake_trial)
    suite = SuiteConfig.model_validate(_SUITE)
    result = choose_formulations(suite, _load, method="vbll", log=lambda _: None)
    assert {task: row["chosen"] for task, row in result.items()} == {"obqa": "options", "winogrande_s": "letter"}
    assert seen == [
        ("obqa", "letter", "vbll_classification", 6), ("obqa", "options", "vbll_options", 6),
        ("winogrande_s", "letter", "vbll_classification", 6), ("winogrande_s", "options", "vbll_options", 6),
    ]
    written = write_formulations(suite, result, tmp_path)
    again = load_suite(str(written["suite"]))
    assert again.formulation == {"obqa": "options", "winogrande_s": "letter"}
    assert "**options**" in written["markdown"].read_text()
    with pytest.raises(UserInputError, match="not in the suite"):
        choose_formulations(suite, _load, method="nope", log=lambda _: None)


def test_cli_fits_both_formulations_for_real(tmp_path, capsys):
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump({**_SUITE, "tasks": ["obqa"]}))
    out = tmp_path / "out"
    assert main(["bench", "formulation", str(suite), "--data-dir", str(DATA), "--out", str(out)]) == 0
    result = json.loads((out / "formulation.json").read_text())["obqa"]
    assert result["method"] == "mle" and result["chosen"] in ("letter", "options")
    assert result["options"]["head"] == "deterministic_options" and result["letter"]["head"] == "deterministic"
    better = min(("letter", "options"), key=lambda f: (result[f]["value"], f != "letter"))
    assert result["chosen"] == better
    assert load_suite(str(out / "formulated.yaml")).formulation == {"obqa": result["chosen"]}
