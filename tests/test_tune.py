"""`bayeshead bench tune`: validation-only scoring, resumable seeded studies, the tuned suite.

The searches run a tiny MiniLM + LoRA set-up (two steps on 24 sentences) with 1-3 trials; the
test of the TPE phase across a kill swaps the training for a cheap function of the parameters."""

from __future__ import annotations

import json

import pytest
import yaml
from _helpers import SENTIMENT

from bayeshead.bench.data import BenchData
from bayeshead.bench.runner import method_config
from bayeshead.bench.suite import QUICK, SuiteConfig, load_suite
from bayeshead.bench.tune import JOURNAL, TuneError, tune_suite
from bayeshead.bench.tune_config import TuneConfig
from bayeshead.bench.tune_trial import ValidationData, format_override
from bayeshead.config import ConfigError, load_config, parse_override
from bayeshead.data import TextDataset
from bayeshead.search_space import IntRange, LogUniform, declared_space

BASE = [
    "backbone.max_length=16", "adapter.rank=2", "adapter.target_modules=[query]", "training.epochs=1",
    "training.batch_size=8", "training.max_steps=2", "training.progress=false", "evaluation.batch_size=8",
]
SPACE = {
    "optimizer.lr": {"kind": "log_uniform", "low": 1e-4, "high": 1e-2},
    "head.weight_decay": {"kind": "log_uniform", "low": 1e-5, "high": 1e-1},
}


class Untouchable:
    """A split that fails the test on any use: attribute, length, iteration, indexing."""

    def __getattr__(self, name):
        raise AssertionError(f"the tuner read the test split (.{name})")

    def __len__(self):
        raise AssertionError("the tuner read the test split (len)")

    def __iter__(self):
        raise AssertionError("the tuner read the test split (iter)")

    def __getitem__(self, index):
        raise AssertionError("the tuner read the test split (index)")


def _split(rows, name):
    texts, labels = zip(*rows, strict=True)
    return TextDataset(texts=list(texts), labels=list(labels), class_names=["neg", "pos"], name=name)


def _data() -> BenchData:
    rows = list(zip(*SENTIMENT, strict=True))
    return BenchData(
        train=_split(rows * 2, "train"), val=_split(rows[:6], "val"), test=Untouchable(), ood=Untouchable(),
        description="tiny sentiment",
    )


def _suite(n_trials: int, seed: int = 0, **tune) -> SuiteConfig:
    return SuiteConfig.model_validate({
        "name": "tiny",
        "base": BASE,
        "methods": [{"name": "lora+map", "overrides": ["adapter.kind=lora", "head.kind=deterministic"]}],
        "tune": {"n_trials": n_trials, "seed": seed, "startup_trials": 3,
                 "methods": {"lora+map": {"space": SPACE, "only": list(SPACE)}}, **tune},
    })


def _trials(out):
    return json.loads((out / "tuning.json").read_text())["studies"][0]["trials"]


def _fake_trial(calls):
    """A stand-in for training: a smooth function of the parameters; raises KeyboardInterrupt (a
    kill) on the call numbered ``calls["kill_at"]``."""
    import math

    from bayeshead.bench.tune_trial import TrialOutcome

    def run(config, data, tune):
        calls["n"] += 1
        if calls["n"] == calls.get("kill_at"):
            raise KeyboardInterrupt
        value = (math.log10(config.optimizer.lr) + 3) ** 2 + (math.log10(config.head.weight_decay) + 2) ** 2
        return TrialOutcome(value, {"acc": 0.5, "nll": value, "ece": 0.0, "brier": 0.0}, 0.0, 0.0)

    return run


def test_the_tuner_never_reads_test_or_ood_data_and_scores_validation(tmp_path):
    written = tune_suite(_suite(2), _data(), tmp_path / "out", log=lambda _: None)
    trials = _trials(tmp_path / "out")
    assert [t["state"] for t in trials] == ["COMPLETE", "COMPLETE"]
    for t in trials:  # the objective is the validation NLL the trial recorded
        assert t["value"] == pytest.approx(t["metrics"]["nll"])
        assert set(t["params"]) == set(SPACE) and t["seconds"] > 0
    assert written["studies"][0].best["value"] == min(t["value"] for t in trials)


def test_a_stopped_search_resumes_where_it_stopped(tmp_path, monkeypatch):
    import bayeshead.bench.tune as tune_module

    monkeypatch.setattr(tune_module, "run_trial", _fake_trial({"n": 0}))
    out = tmp_path / "out"
    tune_suite(_suite(2), _data(), out, log=lambda _: None)
    first = _trials(out)
    with pytest.raises(TuneError, match="--resume"):  # an existing study is never silently extended
        tune_suite(_suite(3), _data(), out, log=lambda _: None)
    tune_suite(_suite(3), _data(), out, resume=True, log=lambda _: None)
    after = _trials(out)
    assert len(after) == 3 and [t["number"] for t in after] == [0, 1, 2]
    assert after[:2] == first  # completed trials were not rerun
    assert len({tuple(sorted(t["params"].items())) for t in after}) == 3


def test_a_search_killed_mid_trial_in_the_tpe_phase_ends_as_the_uninterrupted_one(tmp_path, monkeypatch):
    import bayeshead.bench.tune as tune_module

    straight = tmp_path / "straight"
    monkeypatch.setattr(tune_module, "run_trial", _fake_trial({"n": 0}))
    tune_suite(_suite(8), _data(), straight, log=lambda _: None)
    expected = [t["params"] for t in _trials(straight)]
    assert len({tuple(sorted(p.items())) for p in expected}) == 8

    out = tmp_path / "killed"
    calls = {"n": 0, "kill_at": 6}  # killed while its 6th trial (TPE, after 3 random ones) trains
    monkeypatch.setattr(tune_module, "run_trial", _fake_trial(calls))
    with pytest.raises(KeyboardInterrupt):
        tune_suite(_suite(8), _data(), out, log=lambda _: None)
    messages = []
    tune_suite(_suite(8), _data(), out, resume=True, log=messages.append)
    trials = _trials(out)
    assert [t["state"] for t in trials] == ["COMPLETE"] * 5 + ["FAIL"] + ["COMPLETE"] * 3
    assert trials[5]["interrupted"] and trials[6]["requeued_from"] == 5
    assert [t["params"] for t in trials if t["state"] == "COMPLETE"] == expected
    assert calls["n"] == 9  # 5 before the kill, the killed one, then 6th (again), 7th, 8th
    assert any("queued again" in m for m in messages)


def test_the_same_seed_proposes_the_same_trials_and_another_seed_does_not(tmp_path, monkeypatch):
    import bayeshead.bench.tune as tune_module

    runs = {}
    for name, seed, n in (("a", 7, 2), ("b", 7, 2)):  # real (tiny) training
        tune_suite(_suite(n, seed=seed), _data(), tmp_path / name, log=lambda _: None)
        runs[name] = [t["params"] for t in _trials(tmp_path / name)]
    monkeypatch.setattr(tune_module, "run_trial", _fake_trial({"n": 0}))  # proposals only
    tune_suite(_suite(1, seed=8), _data(), tmp_path / "c", log=lambda _: None)
    runs["c"] = [t["params"] for t in _trials(tmp_path / "c")]
    assert runs["a"] == runs["b"] and runs["a"][0] != runs["a"][1]
    assert runs["a"][0] != runs["c"][0]


def test_resuming_with_other_settings_is_refused(tmp_path, monkeypatch):
    import bayeshead.bench.tune as tune_module

    monkeypatch.setattr(tune_module, "run_trial", _fake_trial({"n": 0}))
    out = tmp_path / "out"
    tune_suite(_suite(1), _data(), out, log=lambda _: None)
    with pytest.raises(TuneError, match="objective: was 'nll', now 'ece'"):
        tune_suite(_suite(2, objective="ece"), _data(), out, resume=True, log=lambda _: None)


def test_the_tuned_yaml_validates_and_names_the_best_parameters(tmp_path):
    out = tmp_path / "out"
    written = tune_suite(_suite(2), _data(), out, ["training.head_lr=0.02"], log=lambda _: None)
    best = written["studies"][0].best
    tuned = load_suite(str(out / "tuned.yaml"))
    assert tuned.name == "tiny-tuned" and "validation" in tuned.description
    spec = tuned.methods[0]
    assert spec.overrides[:2] == ["adapter.kind=lora", "head.kind=deterministic"]
    assert spec.overrides[2] == "training.head_lr=0.02"  # what the search was run with, in its order
    config = method_config(tuned, spec, 0)
    assert config.optimizer.lr == best["params"]["optimizer.lr"]  # the exact float, not a rounding
    assert config.head.weight_decay == best["params"]["head.weight_decay"]
    assert config.training.head_lr == 0.02
    assert (out / JOURNAL).is_file() and "lora+map" in (out / "tuning.md").read_text()


def test_qa_suites_get_tuned_settings_per_task():
    suite = SuiteConfig.model_validate({
        "name": "qa", "tasks": ["obqa", "arc_easy"],
        "methods": [{"name": "m", "overrides": ["head.kind=deterministic"],
                     "task_overrides": {"obqa": ["optimizer.lr=0.005"]}}],
    })
    assert method_config(suite, suite.methods[0], 0, task="obqa").optimizer.lr == 0.005
    assert method_config(suite, suite.methods[0], 0, task="arc_easy").optimizer.lr == 1e-3
    with pytest.raises(ValueError, match="not tasks of the suite"):
        SuiteConfig.model_validate({**suite.model_dump(), "tasks": ["arc_easy"]})


def test_declared_spaces_follow_the_registry_entries_and_their_conditions():
    polar_vbll = load_config(None, [
        "adapter.kind=polar", "optimizer.kind=riemannian_adam", "head.kind=vbll_classification",
        "training.mode=alternating",
    ])
    space = declared_space(polar_vbll)
    assert {"optimizer.lr", "optimizer.stiefel_lr", "head.prior_scale", "training.head_lr", "training.head_steps"} <= set(space)
    assert isinstance(space["head.prior_scale"], LogUniform)
    joint_blob = load_config(None, ["adapter.kind=lora", "method.kind=blob", "training.mode=joint"])
    space = declared_space(joint_blob)
    assert "method.prior_std" in space and "training.head_steps" not in space  # joint never reads head_steps
    assert "optimizer.stiefel_lr" not in space  # AdamW has none
    assert "adapter.dropout" in declared_space(load_config(None, ["adapter.kind=lora", "method.kind=mc_dropout"]))
    laplace = load_config(None, ["adapter.kind=lora", "head.kind=laplace"])
    assert "head.prior_precision" not in declared_space(laplace)  # the marginal likelihood sets it
    fixed = load_config(None, ["adapter.kind=lora", "head.kind=laplace", "head.prior_optimization=none"])
    assert "head.prior_precision" in declared_space(fixed)
    evidence = load_config(None, ["head.kind=vbll_classification", "head.prior_scale_rule=evidence"])
    assert "head.prior_scale" not in declared_space(evidence) and "head.noise_init" in declared_space(evidence)
    assert "head.prior_scale" in declared_space(load_config(None, ["head.kind=vbll_options"]))  # no evidence rule there


def test_suite_space_changes_and_their_errors():
    mle, map_ = QUICK.methods[0], QUICK.methods[1]
    assert "head.weight_decay" not in QUICK.tune.space_for("lora+mle", method_config(QUICK, mle, 0))  # MLE stays MLE
    assert "head.weight_decay" in QUICK.tune.space_for("lora+map", method_config(QUICK, map_, 0))
    suite = _suite(1)
    config = method_config(suite, suite.methods[0], 0)
    assert set(suite.tune.space_for("lora+map", config)) == set(SPACE)  # `only`
    wide = TuneConfig(space={"training.head_steps": {"kind": "int", "low": 1, "high": 8},
                             "head.prior_scale": {"kind": "log_uniform", "low": 1, "high": 9}},
                      exclude=["training.head_lr"])
    space = wide.space_for("lora+map", config)
    assert space["training.head_steps"] == IntRange(low=1, high=8)  # replaced
    assert "head.prior_scale" not in space  # not an option of a deterministic head: skipped
    assert "training.head_lr" not in space and "optimizer.lr" in space
    typo = TuneConfig(methods={"lora+map": {"exclude": ["head.prior_scal"]}})
    with pytest.raises(ConfigError, match="'head.prior_scal', which is not an option"):
        typo.space_for("lora+map", config)
    unspaced = TuneConfig(methods={"lora+map": {"only": ["head.bias"]}})
    with pytest.raises(ConfigError, match="have no distribution"):
        unspaced.space_for("lora+map", config)
    with pytest.raises(ValueError, match="not methods of the suite"):
        SuiteConfig.model_validate({**suite.model_dump(), "tune": {"methods": {"nope": {}}}})
    with pytest.raises(ValueError, match="low > 0"):
        LogUniform(low=0.0, high=1.0)


@pytest.mark.parametrize("value", [1e-05, 0.1 + 0.2, 3, True, "diagonal", "true", None])
def test_overrides_read_back_as_the_same_value(value):
    key, parsed = parse_override(format_override("a.b", value))
    assert key == ["a", "b"] and parsed == value and type(parsed) is type(value)


def test_validation_data_holds_no_test_split():
    view = ValidationData.from_bench(_data())
    assert not hasattr(view, "test") and view.num_classes == 2 and len(view.digest) == 64


def test_cli_tune_writes_a_suite_bench_run_accepts(tmp_path, capsys):
    from bayeshead.cli.main import main

    rows = [(t, "pos" if y else "neg") for t, y in zip(*SENTIMENT, strict=True)] * 2
    data = tmp_path / "d.csv"
    data.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows), encoding="utf-8")
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump(_suite(2).model_dump(mode="json")))
    out = tmp_path / "tune"
    assert main(["bench", "tune", str(suite), "--data", str(data), "--trials", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "tuned suite" in printed and "| lora+map | 1 |" in printed
    assert load_suite(str(out / "tuned.yaml")).tune.n_trials == 1
    runs = tmp_path / "runs"
    assert main(["bench", "run", str(out / "tuned.yaml"), "--data", str(data), "--out", str(runs), "--no-figures"]) == 0
    record = json.loads(next((runs / "runs").glob("*.json")).read_text())
    best = json.loads((out / "tuning.json").read_text())["studies"][0]["best"]["params"]
    assert record["suite"] == "tiny-tuned" and record["config"]["optimizer"]["lr"] == best["optimizer.lr"]
    assert main(["bench", "tune", str(suite), "--data", str(data), "--trials", "1", "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
