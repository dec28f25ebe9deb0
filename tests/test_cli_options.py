"""Every CLI option is honoured: ``validate --deep`` checks what needs the weights, ``bench run
--data`` takes the split limits, bench runs show progress only on a terminal, and every entry
point seeds before anything random is built. Bad inputs have ids starting "bad-"."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers import SENTIMENT, tiny_model

from bayeshead.bench.data import BenchData, file_benchmark
from bayeshead.cli.main import main
from bayeshead.data import TextDataset

_MINILM = ["adapter.kind=lora", "adapter.rank=2", "adapter.target_modules=[query]", "backbone.max_length=16"]


def _validate(*extra: str) -> list[str]:
    argv = ["validate", "--deep"]
    for value in [*_MINILM, *extra]:
        argv += ["--set", value]
    return argv


class _Stop(Exception):
    """Raised by a patched function to end a command once the value under test is known."""


# -- validate --deep -------------------------------------------------------------------------------
def test_validate_deep_loads_the_backbone_and_says_ok(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("training:\n  epochs: 1\n")
    assert main([*_validate()[:1], str(config), *_validate()[1:]]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[: out.rindex("}") + 1])["adapter"]["rank"] == 2  # the resolved config
    last = out.strip().splitlines()[-1]
    assert last.startswith("ok: backbone") and "lora rank 2 on 6 layers" in last and "max_length 16" in last


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param(["adapter.rank=1000"], "rank r=1000 exceeds min(out, in) = min(384, 384)", id="bad-deep-rank-beyond-layer"),
        pytest.param(["backbone.max_length=4096"], "the model has 512 positions", id="bad-deep-max-length-positions"),
        pytest.param(["adapter.target_modules=[q_proj]"], "matched no linear layer", id="bad-deep-target-modules-match-nothing"),
        pytest.param(["adapter.target_modules=(unclosed"], "not a valid regular expression", id="bad-deep-target-regex"),
        pytest.param(["backbone.name_or_path=./no-such-model"], "does not exist", id="bad-deep-backbone-path"),
        pytest.param(["backbone.trust_remote_code=true"], "--trust-remote-code", id="bad-deep-trust-in-config"),
    ],
)
def test_validate_deep_refuses_what_needs_the_weights_on_one_line(tmp_path, capsys, extra, message):
    config = tmp_path / "c.yaml"
    config.write_text("training:\n  epochs: 1\n")
    argv = _validate(*extra)
    assert main([argv[0], str(config), *argv[1:]]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = next(line for line in err.splitlines() if line.startswith("error:"))
    assert message in line


def test_bad_trust_flag_without_deep_is_refused_and_plain_validate_loads_nothing(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("adapter:\n  kind: lora\n  rank: 1000\n")
    assert main(["validate", str(config)]) == 0  # the rank needs the weights: only --deep sees it
    assert "ok:" not in capsys.readouterr().out
    assert main(["validate", str(config), "--trust-remote-code"]) == 2
    assert "goes with --deep" in capsys.readouterr().err


# -- bench run --data with split limits ------------------------------------------------------------
def _rows_file(tmp_path: Path, n: int = 60) -> Path:
    path = tmp_path / "d.csv"
    path.write_text("text,label\n" + "".join(f"text number {i},{i % 3}\n" for i in range(n)))
    return path


def test_file_benchmark_caps_each_split_with_a_seeded_subsample(tmp_path):
    path = _rows_file(tmp_path)
    ood = tmp_path / "ood.csv"
    ood.write_text("text\n" + "".join(f"far away {i}\n" for i in range(9)))
    whole = file_benchmark(path, ood_path=ood)
    assert (len(whole.train), len(whole.val), len(whole.test), len(whole.ood)) == (42, 6, 12, 9)
    capped = file_benchmark(path, ood_path=ood, n_train=10, n_val=3, n_test=4, n_ood=2, seed=5)
    assert (len(capped.train), len(capped.val), len(capped.test), len(capped.ood)) == (10, 3, 4, 2)
    assert set(capped.train.texts) <= set(file_benchmark(path, seed=5).train.texts)  # a subsample of the split
    assert "subsampled with seed 5: n_train 10 of 42, n_val 3 of 6, n_test 4 of 12, n_ood 2 of 9" in capped.description
    again = file_benchmark(path, ood_path=ood, n_train=10, n_val=3, n_test=4, n_ood=2, seed=5)
    assert again.train.texts == capped.train.texts and again.ood == capped.ood
    other = file_benchmark(path, ood_path=ood, n_train=10, n_val=3, n_test=4, n_ood=2, seed=6)
    assert other.train.texts != capped.train.texts
    loose = file_benchmark(path, n_train=1000)  # a limit above the split keeps it whole
    assert len(loose.train) == 42 and "subsampled" not in loose.description


def test_bad_a_zero_split_limit_is_refused(tmp_path):
    from bayeshead.errors import UserInputError

    with pytest.raises(UserInputError, match="n_train must be a positive number of rows"):
        file_benchmark(_rows_file(tmp_path), n_train=0)


def test_bench_run_with_data_applies_the_suite_limits_unless_given(tmp_path, monkeypatch):
    import bayeshead.bench.runner as runner

    seen: list[BenchData] = []

    def capture(suite, datasets, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        seen.extend(datasets)
        raise _Stop

    monkeypatch.setattr(runner, "run_suite", capture)
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: tiny\nbase: [backbone.max_length=16]\nn_train: 6\nn_val: 3\nn_test: 4\nn_ood: 1\n"
        "methods:\n  - {name: frozen, overrides: [head.kind=deterministic]}\n"
    )
    with pytest.raises(_Stop):
        main(["bench", "run", str(suite), "--data", str(_rows_file(tmp_path)), "--n-train", "8", "--out", str(tmp_path / "o")])
    data = seen[0]
    assert (len(data.train), len(data.val), len(data.test)) == (8, 3, 4)  # --n-train wins; the rest are the suite's


# -- progress -----------------------------------------------------------------------------------------
class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _fake_record(suite, method, seed, data, overrides=()):  # noqa: ANN001
    return {"method": method.name, "seed": seed, "train_seconds": 0.0, "predict_seconds": 0.0, "data": {},
            "metrics": {"acc": 1.0, "ece": 0.0, "nll": 0.1}}


@pytest.mark.parametrize("terminal", [True, False])
def test_bench_progress_is_drawn_on_a_terminal_and_not_in_logs(tmp_path, monkeypatch, terminal):
    import bayeshead.bench.runner as runner
    from bayeshead.bench.suite import SuiteConfig

    monkeypatch.setattr(runner, "run_method", _fake_record)
    stderr = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    suite = SuiteConfig.model_validate(
        {"name": "t", "methods": [{"name": "first", "overrides": []}, {"name": "second", "overrides": []}], "seeds": [0]}
    )
    texts, labels = SENTIMENT
    data = BenchData(TextDataset(texts, labels), TextDataset(texts, labels), TextDataset(texts, labels), None, "d")
    lines: list[str] = []
    runner.run_suite(suite, data, tmp_path, log=lines.append)
    assert [line.split(":")[0] for line in lines] == ["[1/2] first seed 0", "[2/2] second seed 0"]
    drawn = stderr.getvalue()
    if terminal:
        assert "2/2" in drawn and "second seed 0" in drawn and "run" in drawn
    else:
        assert drawn == ""


@pytest.mark.parametrize("terminal", [True, False])
def test_training_steps_are_drawn_on_a_terminal_and_not_in_logs(offline_tokenizer, monkeypatch, terminal):
    from bayeshead.training import Trainer

    model = tiny_model(offline_tokenizer, ["training.progress=true", "training.max_steps=2", "training.batch_size=4"])
    stderr = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    Trainer(model).fit(TextDataset(*SENTIMENT))
    drawn = stderr.getvalue()
    assert ("train deterministic" in drawn and "2/2" in drawn) if terminal else drawn == ""


# -- seeds before anything random is built --------------------------------------------------------------
def _draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def _scramble() -> None:
    random.seed(None)
    np.random.seed(None)
    torch.seed()


def test_bench_runs_seed_python_numpy_and_torch_before_building(monkeypatch):
    import bayeshead.methods
    from bayeshead.bench.runner import run_method
    from bayeshead.bench.suite import SuiteConfig

    seen = []

    def build(config, num_outputs, backbone=None):  # noqa: ANN001
        seen.append(_draws())
        raise _Stop

    monkeypatch.setattr(bayeshead.methods, "build_method", build)
    suite = SuiteConfig.model_validate({"name": "t", "methods": [{"name": "m", "overrides": []}]})
    texts, labels = SENTIMENT
    data = BenchData(TextDataset(texts, labels), TextDataset(texts, labels), TextDataset(texts, labels), None, "d")
    for _ in range(2):
        _scramble()
        with pytest.raises(_Stop):
            run_method(suite, suite.methods[0], 7, data)
    assert seen[0] == seen[1]
    from bayeshead.seeding import seed_everything

    seed_everything(7)
    assert seen[0] == _draws()


def test_demo_seeds_before_building_the_model(monkeypatch, capsys):
    from bayeshead.cli.demo import run_demo
    from bayeshead.model import BayesianModel

    seen = []

    def build(config, num_outputs, backbone=None):  # noqa: ANN001
        seen.append(_draws())
        raise _Stop

    monkeypatch.setattr(BayesianModel, "from_config", build)
    for _ in range(2):
        _scramble()
        with pytest.raises(_Stop):
            run_demo(overrides=["training.seed=11"], n_train=10, n_test=5)
    capsys.readouterr()
    assert seen[0] == seen[1]


def test_fit_seeds_python_numpy_and_torch_from_training_seed(offline_tokenizer):
    from bayeshead.training import Trainer

    seen = []
    for _ in range(2):
        model = tiny_model(offline_tokenizer, ["training.max_steps=1", "training.batch_size=4", "training.seed=5"])
        _scramble()
        Trainer(model, on_step=lambda step, row: seen.append(_draws())).fit(TextDataset(*SENTIMENT))
    assert seen[0] == seen[1]
