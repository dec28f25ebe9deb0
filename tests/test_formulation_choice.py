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
from bayeshead.bench.formulation import (
    candidate_formulations,
    choose_formulations,
    write_formulations,
)
from bayeshead.bench.runner import method_config
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


def test_a_causal_lm_also_tries_the_option_lm_score_and_data_is_loaded_once_per_kind(monkeypatch, tmp_path):
    suite = SuiteConfig.model_validate(
        {**_SUITE, "tasks": ["obqa"], "base": [*_SUITE["base"], "backbone.model_class=causal_lm"]}
    )
    assert candidate_formulations(suite) == ["letter", "options", "options_lm_score"]
    assert candidate_formulations(SuiteConfig.model_validate(_SUITE)) == ["letter", "options"]  # an encoder: no LM score
    seen, loads = [], []

    def fake_trial(config, data, tune):
        seen.append((config.task.formulation, config.backbone.option_lm_score, config.head.kind))
        nll = {"letter": 1.3, "options": 1.1}[config.task.formulation] - 0.2 * config.backbone.option_lm_score
        return TrialOutcome(nll, {"nll": nll, "acc": 0.5, "ece": 0.1, "brier": 0.5}, 1.0, 0.5)

    def load(task, kind):
        loads.append(kind)
        return _load(task, kind)

    monkeypatch.setattr("bayeshead.bench.formulation.run_trial", fake_trial)
    result = choose_formulations(suite, load, log=lambda _: None)
    assert seen == [("letter", False, "deterministic"), ("options", False, "deterministic_options"),
                    ("options", True, "deterministic_options")]
    assert loads == ["letter", "options"]  # both per-option candidates share the option data
    assert result["obqa"]["chosen"] == "options_lm_score"
    written = write_formulations(suite, result, tmp_path)
    assert load_suite(str(written["suite"])).formulation == {"obqa": "options_lm_score"}
    assert "options_lm_score: val NLL" in written["markdown"].read_text()
    only = choose_formulations(suite, load, candidates=["options", "letter"], log=lambda _: None)
    assert only["obqa"]["chosen"] == "options" and "options_lm_score" not in only["obqa"]
    with pytest.raises(UserInputError, match="two or more"):
        choose_formulations(suite, load, candidates=["options"], log=lambda _: None)


def test_the_formulation_decides_the_option_lm_score_and_a_contradicting_override_is_refused():
    suite = SuiteConfig.model_validate(
        {**_SUITE, "base": [*_SUITE["base"], "backbone.model_class=causal_lm"],
         "formulation": {"obqa": "options_lm_score", "winogrande_s": "options"}}
    )
    mle = suite.methods[0]
    on = method_config(suite, mle, 0, (), "obqa")
    off = method_config(suite, mle, 0, (), "winogrande_s")
    assert (on.task.formulation, on.backbone.option_lm_score, on.head.kind) == ("options", True, "deterministic_options")
    assert (off.task.formulation, off.backbone.option_lm_score) == ("options", False)
    assert method_config(suite, mle, 0, ("backbone.option_lm_score=true",), "obqa").backbone.option_lm_score
    with pytest.raises(UserInputError, match="contradicts the suite's formulation of winogrande_s"):
        method_config(suite, mle, 0, ("backbone.option_lm_score=true",), "winogrande_s")
    with pytest.raises(UserInputError, match="formulation.obqa: options"):
        method_config(suite, mle, 0, ("backbone.option_lm_score = false",), "obqa")
