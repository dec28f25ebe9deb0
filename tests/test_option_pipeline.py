"""Multiple choice end to end: option groups through the model, the trainer, every whole-model
method and `bayeshead bench run` with a task in the per-option formulation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _helpers import tiny_decoder, tiny_model, toy_questions

from bayeshead.backbones.option_groups import pad_option_features, unpad_option_features
from bayeshead.bench.runner import method_config
from bayeshead.bench.suite import SuiteConfig
from bayeshead.cli.main import main
from bayeshead.config import load_config
from bayeshead.data import TextDataset
from bayeshead.errors import BayesheadError, UserInputError
from bayeshead.evaluation import evaluate, predict_dataset
from bayeshead.methods import build_method

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"




# ----- padding -----

def test_pad_and_unpad_option_features_round_trip_and_refuse_corrupt_padding():
    counts = torch.tensor([2, 4, 3])
    flat = torch.randn(9, 5, requires_grad=True)
    padded = pad_option_features(flat, counts)
    assert padded.shape == (3, 4, 5)
    assert torch.isnan(padded[0, 2:]).all() and torch.isnan(padded[2, 3]).all() and not torch.isnan(padded[1]).any()
    again, got = unpad_option_features(padded, "test")
    assert got.tolist() == [2, 4, 3]
    torch.testing.assert_close(again, flat)
    again.sum().backward()  # gradients reach the real rows only, and are finite
    torch.testing.assert_close(flat.grad, torch.ones(9, 5))
    broken = padded.detach().clone()
    broken[1, 2, 0] = float("nan")  # NaN inside a real option's row
    with pytest.raises(UserInputError, match="NaN inside an option"):
        unpad_option_features(broken, "test")
    gap = padded.detach().clone()
    gap[1, 1] = float("nan")  # a missing option before a present one
    with pytest.raises(UserInputError, match="before a present one"):
        unpad_option_features(gap, "test")
    lone = padded.detach().clone()
    lone[0, 1] = float("nan")
    with pytest.raises(UserInputError, match="1 option"):
        unpad_option_features(lone, "test")


def test_option_group_features_are_the_features_of_each_option_text(offline_tokenizer):
    model = tiny_model(offline_tokenizer, ["head.kind=deterministic_options"], num_outputs=4)
    data = toy_questions(5)
    with torch.no_grad():
        grouped = model.features(data.texts)
        flat = model.features(data.flat_texts)  # one batch of all option texts, padded together
    assert grouped.shape == (5, 4, model.backbone.feature_dim)
    rows, counts = unpad_option_features(grouped, "test")
    assert counts.tolist() == [len(g) for g in data.texts]
    torch.testing.assert_close(rows, flat, atol=1e-5, rtol=1e-5)
    with pytest.raises(TypeError, match="text_pair"):
        model.features(data.texts, text_pair=["x"] * 5)


# ----- every method on multiple-choice data -----

_TRAIN = [
    "training.progress=false", "training.epochs=4", "training.batch_size=4", "optimizer.lr=0.02",
    "training.head_lr=0.05", "adapter.kind=lora", "adapter.rank=2", "adapter.target_modules=[q_proj, v_proj]",
]


@pytest.mark.parametrize(
    ("method", "head"),
    [
        ("single", "deterministic_options"),
        ("single", "vbll_options"),
        ("mc_dropout", "deterministic_options"),
        ("ensemble", "deterministic_options"),
        ("blob", "deterministic_options"),
        ("tfb", "deterministic_options"),
    ],
)
def test_every_method_trains_and_predicts_multiple_choice(method, head, offline_tokenizer):
    from bayeshead.backbones.huggingface import HuggingFaceBackbone

    extra = {"mc_dropout": ["adapter.dropout=0.1", "method.n_samples=3"], "ensemble": ["method.members=2"],
             "blob": ["method.n_samples=3"], "tfb": ["method.n_samples=3"]}.get(method, [])
    config = load_config(overrides=[*_TRAIN, f"head.kind={head}", f"method.kind={method}", *extra])
    net = tiny_decoder("llama", offline_tokenizer.vocab_size, seed=0)
    backbone = HuggingFaceBackbone(net, offline_tokenizer, pooling="last_token", max_length=32)
    torch.manual_seed(0)
    runner = build_method(config, num_outputs=4, backbone=backbone)
    train = toy_questions(12)
    before = predict_dataset(runner.predict, train.texts, 5, seed=0)
    rows = runner.fit(train, toy_questions(6))
    assert rows and all(torch.isfinite(torch.tensor(r["total"])) for r in rows if "total" in r)
    after = predict_dataset(runner.predict, train.texts, 5, seed=0)
    assert after.probs.shape == (12, 4)
    torch.testing.assert_close(after.probs.sum(-1), torch.ones(12, dtype=after.probs.dtype), atol=1e-6, rtol=0)
    sizes = torch.tensor([len(g) for g in train.texts])
    absent = torch.arange(4)[None, :] >= sizes[:, None]
    assert (after.probs[absent] == 0).all() and (after.probs[~absent] > 0).all()
    metrics = evaluate(after, train.labels, None, 5)
    assert 0.0 <= metrics["acc"] <= 1.0 and metrics["nll"] >= 0
    # training moved the predictive towards the correct options
    assert float(after.nll(train.labels).mean()) < float(before.nll(train.labels).mean())


def test_laplace_lora_refuses_a_per_option_head_it_cannot_linearise():
    config = load_config(overrides=["head.kind=vbll_options", *_TRAIN, "method.kind=laplace_lora"])
    with pytest.raises(BayesheadError, match="per-option heads"):
        build_method(config, num_outputs=4)


def test_a_per_option_head_refuses_letter_data_and_a_class_head_refuses_groups(offline_tokenizer):
    model = tiny_model(offline_tokenizer, ["head.kind=deterministic_options", "training.max_steps=1"], num_outputs=4)
    with pytest.raises(ValueError, match="per-option head|multiple_choice head"):
        model.fit(TextDataset(["a", "b"], [0, 1]))
    plain = tiny_model(offline_tokenizer, ["head.kind=deterministic", "training.max_steps=1"], num_outputs=4)
    with pytest.raises(ValueError, match="multiple_choice targets"):
        plain.fit(toy_questions(4))
    wide = toy_questions(4)
    narrow = tiny_model(offline_tokenizer, ["head.kind=deterministic_options", "training.max_steps=1"], num_outputs=3)
    with pytest.raises(ValueError, match="4 options but the head scores at most 3"):
        narrow.fit(wide)


# ----- the bench with a task in the options formulation -----

_SUITE = """\
name: tiny-options
tasks: [obqa]
ood_tasks: {obqa: [arc_easy]}
formulation: {obqa: options}
n_train: 12
n_val: 6
n_test: 8
n_ood: 6
base: [backbone.max_length=48, adapter.rank=2, 'adapter.target_modules=[query]', training.epochs=1,
       training.batch_size=4, training.progress=false]
methods:
  - {name: mle, overrides: [adapter.kind=lora, head.kind=deterministic]}
  - {name: vbll, overrides: [adapter.kind=lora, head.kind=vbll_classification, head.prior_scale=30, training.mode=alternating]}
"""


def test_method_config_swaps_in_the_per_option_head_and_refuses_heads_without_one():
    suite = SuiteConfig.model_validate(
        {"name": "s", "tasks": ["obqa"], "formulation": {"obqa": "options"},
         "methods": [{"name": "vbll", "overrides": ["head.kind=vbll_classification", "head.prior_scale=7"]},
                     {"name": "ts", "overrides": ["head.kind=temperature"]},
                     {"name": "la", "overrides": ["head.kind=laplace"]}]}
    )
    config = method_config(suite, suite.methods[0], 0, task="obqa")
    assert config.head.kind == "vbll_options" and config.head.prior_scale == 7  # settings carried over
    assert config.task.formulation == "options"
    with pytest.raises(UserInputError, match="no per-option counterpart"):
        method_config(suite, suite.methods[1], 0, task="obqa")
    assert method_config(suite, suite.methods[2], 0, task="obqa").head.kind == "laplace_options"
    letter = suite.model_copy(update={"formulation": {}})
    assert method_config(letter, letter.methods[0], 0, task="obqa").head.kind == "vbll_classification"
    with pytest.raises(ValueError, match="formulation names"):
        SuiteConfig.model_validate({"name": "s", "tasks": ["obqa"], "formulation": {"arc_easy": "options"},
                                    "methods": [{"name": "m"}]})


def test_bench_run_puts_a_task_in_the_options_formulation(tmp_path, capsys):
    suite = tmp_path / "tiny-options.yaml"
    suite.write_text(_SUITE)
    out = tmp_path / "out"
    assert main(["bench", "run", str(suite), "--data-dir", str(DATA), "--out", str(out), "--no-figures"]) == 0
    record = json.loads((out / "runs/obqa/vbll--seed0.json").read_text())
    assert record["config"]["head"]["kind"] == "vbll_options"
    assert record["config"]["task"]["formulation"] == "options" and record["head_init"] == "random"
    assert "one sequence per option" in record["data"]["description"]
    metrics = record["metrics"]
    assert 0.0 <= metrics["acc"] <= 1.0 and 0.0 <= metrics["arc_easy/acc"] <= 1.0
    assert 0.0 <= metrics["arc_easy/auroc_maxprob"] <= 1.0
    mle = json.loads((out / "runs/obqa/mle--seed0.json").read_text())
    assert mle["config"]["head"]["kind"] == "deterministic_options"
    assert len(mle["per_example"]["test"]["nll"]) == 8


def test_zero_shot_rows_score_the_test_questions_once_for_every_seed(tmp_path, offline_tokenizer, capsys):
    from bayeshead.backbones.huggingface import HuggingFaceBackbone
    from bayeshead.bench.data import qa_benchmark
    from bayeshead.tasks.cloze import cloze_predictive

    model_dir = tmp_path / "tiny-llama"
    tiny_decoder("llama", offline_tokenizer.vocab_size).save_pretrained(model_dir)
    offline_tokenizer.save_pretrained(model_dir)
    suite = tmp_path / "zs.yaml"
    suite.write_text(
        _SUITE.replace("formulation: {obqa: options}", "formulation: {obqa: options_lm_score}\nzero_shot: [cloze, letter]\nseeds: [0, 1]")
    )
    out = tmp_path / "out"
    setup = [
        "--model", str(model_dir), "--data-dir", str(DATA), "--no-figures",
        "--set", "backbone.model_class=causal_lm", "--set", "backbone.pooling=last_token",
        "--set", "backbone.padding_side=left", "--set", "adapter.target_modules=[q_proj,v_proj]",
    ]
    cache = tmp_path / "prefix-cache"
    argv = ["bench", "run", str(suite), "--methods", "zero_shot_cloze", "zero_shot_letter", "mle",
            "--out", str(out), *setup, "--set", "backbone.cache_prefix=true", "--set", f"backbone.cache_dir={cache}",
            "--set", "adapter.top_layers=1"]
    assert main(argv) == 0, capsys.readouterr().err
    # the prefix states of train, val, test and the OOD set were written once to disk
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 4
    mle = json.loads((out / "runs/obqa/mle--seed1.json").read_text())
    assert mle["head_init"] == "lm_score" and mle["config"]["head"]["kind"] == "deterministic_options"
    cloze = [json.loads((out / f"runs/obqa/zero_shot_cloze--seed{s}.json").read_text()) for s in (0, 1)]
    letter = json.loads((out / "runs/obqa/zero_shot_letter--seed0.json").read_text())
    assert cloze[0]["metrics"] == cloze[1]["metrics"] and cloze[1]["seed"] == 1
    assert cloze[0]["train_seconds"] == 0 and cloze[0]["method_kind"] == "zero_shot"
    assert letter["head_init"] == "lm_head" and 0.0 <= letter["metrics"]["arc_easy/acc"] <= 1.0
    # the recorded per-question correctness is that of the LM's own cloze scores
    data = qa_benchmark("obqa", n_train=12, n_val=6, n_test=8, n_ood=6, ood_tasks=["arc_easy"], data_dir=DATA,
                        formulation="options")
    backbone = HuggingFaceBackbone.from_config(load_config(overrides=[
        f"backbone.name_or_path={model_dir}", "backbone.model_class=causal_lm", "backbone.pooling=last_token",
        "backbone.padding_side=left", "backbone.max_length=48"]).backbone)
    direct = cloze_predictive(backbone, "obqa", data.records["test"], normalize="tokens").padded(4)
    expected = (direct.probs.argmax(-1) == data.test.labels).double().tolist()
    assert cloze[0]["per_example"]["test"]["correct"] == expected
    torch.testing.assert_close(
        torch.tensor(cloze[0]["per_example"]["test"]["confidence"], dtype=torch.float64), direct.probs.max(-1).values.double(),
        atol=1e-5, rtol=1e-5,  # other batches, other padding
    )
    report = (out / "results.md").read_text()
    assert report.index("zero_shot_cloze") < report.index("| mle")
    assert "Paired differences vs mle (obqa)" in report  # the first trained method, not a zero-shot row
    # kept on --resume without scoring again
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 0
    printed = capsys.readouterr()
    assert "zero_shot_cloze on obqa: kept 2 records" in printed.out + printed.err
    # the zero-shot rows alone, selected by their row names (no training)
    only = tmp_path / "only"
    argv_only = ["bench", "run", str(suite), "--methods", "zero_shot_letter", "--out", str(only), *setup]
    assert main(argv_only) == 0
    written = sorted(p.name for p in (only / "runs/obqa").glob("*.json"))
    assert written == ["zero_shot_letter--seed0.json", "zero_shot_letter--seed1.json"]


def test_every_method_of_the_cpu_grid_has_a_per_option_form():
    from bayeshead.bench.suite import load_suite

    suite = load_suite("commonsense-cpu")
    options = suite.model_copy(update={"formulation": {task: "options" for task in suite.tasks}})
    for method in suite.methods:
        config = method_config(options, method, 0, task="arc_easy")
        assert config.head.kind in ("deterministic_options", "vbll_options", "laplace_options"), method.name
        assert config.task.formulation == "options"
