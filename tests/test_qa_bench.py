"""The common-sense QA benchmark: registered tasks, seeded splits with OOD sets, suite validation,
the head started from a causal LM's answer rows, and `bayeshead bench run` / `bench report` end to
end on real data files (tiny subsamples)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from _helpers import tiny_decoder, tiny_model
from pydantic import ValidationError

from bayeshead.bench.data import qa_benchmark
from bayeshead.bench.runner import init_heads_from_answers, method_config
from bayeshead.bench.suite import SuiteConfig, load_suite
from bayeshead.cli.main import main
from bayeshead.config import ConfigError, load_config
from bayeshead.errors import UserInputError
from bayeshead.methods.single import SingleModel
from bayeshead.registry import TASKS
from bayeshead.tasks import format_prompt, load_task
from bayeshead.tasks.records import QARecord
from bayeshead.tasks.task import QATask

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

ALL_TASKS = [
    "arc_challenge", "arc_easy", "boolq", "mmlu_college_chemistry", "mmlu_college_physics", "obqa",
    "winogrande_m", "winogrande_s",
]


# ----- the task registry -----

def test_every_task_is_registered_with_its_classes_and_answers():
    assert sorted(TASKS.names()) == ALL_TASKS
    expected = {"winogrande_s": 2, "winogrande_m": 2, "arc_challenge": 5, "arc_easy": 5, "obqa": 4,
                "boolq": 2, "mmlu_college_chemistry": 4, "mmlu_college_physics": 4}
    for name, classes in expected.items():
        task = TASKS.create(name, TASKS.config_class(name)())
        assert task.num_classes == classes
        assert len(task.answers) == classes and all(a.startswith(" ") for a in task.answers)
    assert QATask("boolq").answers == [" true", " false"]
    assert QATask("obqa").answers == [" A", " B", " C", " D"]
    # the `task` section of an experiment config names a registered task
    assert load_config(overrides=["task.kind=arc_easy"]).task.kind == "arc_easy"
    with pytest.raises(ValidationError, match="unknown task .arc."):
        load_config(overrides=["task.kind=arc"])
    with pytest.raises(ValidationError, match="head_init"):
        load_config(overrides=["task.kind=obqa", "task.head_init=sometimes"])


def test_task_dataset_is_the_prompts_and_answer_indices():
    task = QATask("obqa")
    _, records = load_task("obqa", DATA)
    data = task.dataset(records[:5], "test")
    assert data.texts == [format_prompt("obqa", r) for r in records[:5]]
    assert data.labels.tolist() == [r.answer for r in records[:5]]
    assert data.class_names == ["A", "B", "C", "D"]
    five = QARecord(id="x", question="q?", choices=("a", "b", "c", "d", "e"), labels=tuple("ABCDE"), answer=4)
    assert not task.fits(five) and QATask("arc_easy").fits(five)
    with pytest.raises(UserInputError, match="more than 4 options"):
        task.dataset([five], "test")


# ----- splits -----

def test_qa_benchmark_splits_are_disjoint_seeded_and_counted():
    data = qa_benchmark("obqa", n_train=40, n_val=10, n_test=20, n_ood=7,
                        ood_tasks=["arc_easy", "mmlu_college_physics"], seed=0, data_dir=DATA)
    train_records, eval_records = load_task("obqa", DATA)
    train_prompts = {format_prompt("obqa", r) for r in train_records}
    eval_prompts = {format_prompt("obqa", r) for r in eval_records}
    assert (len(data.train), len(data.val), len(data.test)) == (40, 10, 20)
    assert set(data.train.texts) <= train_prompts and set(data.val.texts) <= train_prompts
    assert not set(data.train.texts) & set(data.val.texts)
    assert set(data.test.texts) <= eval_prompts
    assert data.task == "obqa" and data.num_classes == 4 and data.ood is None
    assert {k: len(v) for k, v in data.ood_sets.items()} == {"arc_easy": 7, "mmlu_college_physics": 7}
    _, arc = load_task("arc_easy", DATA)
    arc_prompts = {format_prompt("arc_easy", r): r for r in arc}
    for text, label in zip(data.ood_sets["arc_easy"].texts, data.ood_sets["arc_easy"].labels, strict=True):
        assert len(arc_prompts[text].choices) <= 4 and label == arc_prompts[text].answer
    assert "arc_easy 7 of 570 (2 with more than 4 options left out)" in data.description
    again = qa_benchmark("obqa", n_train=40, n_val=10, n_test=20, seed=0, data_dir=DATA)
    other = qa_benchmark("obqa", n_train=40, n_val=10, n_test=20, seed=1, data_dir=DATA)
    assert again.train.texts == data.train.texts and again.test.texts == data.test.texts
    assert other.train.texts != data.train.texts
    whole = qa_benchmark("winogrande_s", n_train=None, n_val=40, n_test=None, data_dir=DATA)
    assert (len(whole.train), len(whole.val), len(whole.test)) == (640 - 40, 40, 1267)


def test_qa_benchmark_refuses_impossible_requests():
    with pytest.raises(UserInputError, match="no training split"):
        qa_benchmark("mmlu_college_physics", n_train=10, n_val=5, n_test=5, data_dir=DATA)
    with pytest.raises(UserInputError, match="training split has 640"):
        qa_benchmark("winogrande_s", n_train=600, n_val=100, n_test=5, data_dir=DATA)


def test_boolq_from_the_files_is_labelled_as_the_dev_halves():
    data = qa_benchmark("boolq", n_train=20, n_val=5, n_test=10, data_dir=DATA)
    assert "two seeded halves of the dev file" in data.description
    assert data.train.class_names == ["true", "false"]


# ----- suites -----

def test_suite_tasks_are_validated_and_selected():
    methods = [{"name": "m"}]
    with pytest.raises(ValueError, match="unknown task"):
        SuiteConfig(name="s", methods=methods, tasks=["arc"])
    with pytest.raises(ValueError, match="not in tasks"):
        SuiteConfig(name="s", methods=methods, tasks=["obqa"], ood_tasks={"arc_easy": ["arc_challenge"]})
    with pytest.raises(ValueError, match="unknown task"):
        SuiteConfig(name="s", methods=methods, tasks=["obqa"], ood_tasks={"obqa": ["mmlu_physics"]})
    suite = SuiteConfig(name="s", methods=methods, tasks=["obqa", "arc_easy"], ood_tasks={"obqa": ["arc_challenge"]})
    picked = suite.select_tasks(["arc_easy"])
    assert picked.tasks == ["arc_easy"] and picked.ood_tasks == {}
    # the selected task keeps its place in the full suite, also through updated() (CLI seeds)
    assert picked.task_position("arc_easy") == 1
    assert picked.updated({"seeds": [3]}).task_position("arc_easy") == 1
    with pytest.raises(ConfigError, match="unknown task"):
        suite.select_tasks(["boolq"])


@pytest.mark.parametrize("name", ["commonsense-cpu", "commonsense"])
def test_commonsense_suites_hold_the_paper_grid(name):
    suite = load_suite(name)
    assert [m.name for m in suite.methods] == [
        "mle", "map", "mc_dropout", "ensemble", "laplace_lora", "last_layer_laplace", "vbll", "polar_vbll",
        "polar_vbll+la", "blob", "tfb",
    ]
    assert set(suite.tasks) >= {"winogrande_s", "arc_easy", "obqa"}
    assert suite.ood_tasks["obqa"] == ["arc_challenge", "arc_easy", "mmlu_college_chemistry", "mmlu_college_physics"]
    heads = {}
    for task in suite.tasks:
        for method in suite.methods:
            config = method_config(suite, method, 0, (), task)
            assert config.task.kind == task
            heads[method.name] = config
    # the CPU grid puts every task one sequence per option: the per-option counterparts of the heads
    options = all(suite.data_formulation(task) == "options" for task in suite.tasks)
    assert options == (name == "commonsense-cpu")
    for task in suite.tasks:  # the LM score is a feature exactly where the formulation says so
        config = method_config(suite, suite.methods[0], 0, (), task)
        assert config.backbone.option_lm_score == (suite.formulation.get(task) == "options_lm_score")
    det, la, vbll = ("deterministic_options", "laplace_options", "vbll_options") if options else (
        "deterministic", "laplace", "vbll_classification")
    assert heads["laplace_lora"].method.kind == "laplace_lora" and heads["laplace_lora"].head.kind == det
    assert heads["last_layer_laplace"].head.kind == la
    assert heads["polar_vbll"].adapter.kind == "polar" and heads["polar_vbll"].head.kind == vbll
    assert heads["polar_vbll+la"].training.laplace_refine
    assert heads["ensemble"].method.kind == "ensemble" and heads["ensemble"].method.members > 1
    assert heads["blob"].method.kind == "blob" and heads["tfb"].method.kind == "tfb"


# ----- the head of a causal LM starts at its answer logits -----

@pytest.mark.parametrize("head_kind", ["deterministic", "vbll_classification"])
def test_runner_starts_the_head_from_the_answer_rows(offline_tokenizer, head_kind):
    overrides = [f"head.kind={head_kind}", "backbone.model_class=causal_lm", "task.kind=obqa"]
    model = tiny_model(offline_tokenizer, overrides, num_outputs=4)
    assert init_heads_from_answers(SingleModel(model), model.config)
    weight, _ = model.backbone.answer_head_rows([" A", " B", " C", " D"])
    features = model.features(["Question: which? Answer:"])
    if head_kind == "deterministic":
        logits = model.head.linear(features)
    else:
        logits, _ = model.head.logit_moments(features)
    torch.testing.assert_close(logits, features @ weight.T.to(features))
    for kept in (["task.head_init=random"], ["backbone.model_class=auto"]):
        other = tiny_model(offline_tokenizer, [*overrides, *kept], num_outputs=4)
        before = [p.detach().clone() for p in other.head.parameters()]
        assert not init_heads_from_answers(SingleModel(other), other.config)
        assert all(torch.equal(a, b) for a, b in zip(before, other.head.parameters(), strict=True))


# ----- Laplace-LoRA validates on its MAP network while training -----

def test_laplace_lora_refuses_before_fit_and_trains_a_map_network(offline_tokenizer):
    from bayeshead.errors import UserInputError
    from bayeshead.methods.laplace_lora import LaplaceLoRA

    model = tiny_model(offline_tokenizer, ["adapter.kind=lora", "adapter.rank=2", "adapter.target_modules=[q_proj]",
                                           "head.kind=deterministic", "method.kind=laplace_lora"])
    method = LaplaceLoRA(model)
    method.prepare_model()
    texts = ["great film", "awful plot"]
    with pytest.raises(UserInputError, match="(?i)fit"):
        method.predict(texts)  # no posterior yet: refusing is right for a user
    assert method.training_hooks() is None  # validation scores the MAP softmax network being trained
    torch.testing.assert_close(model.predict(texts).probs, torch.softmax(model.head.linear(model.features(texts)), -1))


# ----- bayeshead bench run / bench report end to end -----

_TINY_SUITE = """\
name: tiny-qa
tasks: [winogrande_s, obqa]
ood_tasks: {obqa: [mmlu_college_physics, arc_challenge]}
n_train: 16
n_val: 8
n_test: 12
n_ood: 10
base: [backbone.max_length=48, adapter.rank=2, 'adapter.target_modules=[query]', training.epochs=1,
       training.batch_size=8, training.progress=false]
methods:
  - {name: mle, overrides: [adapter.kind=lora, head.kind=deterministic]}
  - {name: laplace_lora, overrides: [adapter.kind=lora, head.kind=deterministic, method.kind=laplace_lora, method.hessian_structure=diag]}
"""


def test_bench_run_and_report_on_qa_tasks(tmp_path, capsys):
    suite = tmp_path / "tiny-qa.yaml"
    suite.write_text(_TINY_SUITE)
    out = tmp_path / "out"
    assert main(["bench", "run", str(suite), "--data-dir", str(DATA), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "### winogrande_s" in printed and "### obqa" in printed
    runs = sorted(p.relative_to(out).as_posix() for p in (out / "runs").rglob("*.json"))
    assert runs == [
        "runs/obqa/laplace_lora--seed0.json", "runs/obqa/mle--seed0.json",
        "runs/winogrande_s/laplace_lora--seed0.json", "runs/winogrande_s/mle--seed0.json",
    ]
    record = json.loads((out / "runs/obqa/laplace_lora--seed0.json").read_text())
    assert record["task"] == "obqa" and record["config"]["task"]["kind"] == "obqa"
    assert record["head_init"] == "random"  # an encoder: no LM head to start from
    assert record["data"]["ood_sets"] == {"mmlu_college_physics": 10, "arc_challenge": 10}
    metrics = record["metrics"]
    for name in ("mmlu_college_physics", "arc_challenge"):
        assert 0.0 <= metrics[f"{name}/acc"] <= 1.0 and metrics[f"{name}/nll"] > 0
        assert 0.0 <= metrics[f"{name}/auroc_maxprob"] <= 1.0
    wg = json.loads((out / "runs/winogrande_s/mle--seed0.json").read_text())
    assert wg["data"]["ood_sets"] == {} and "mmlu_college_physics/acc" not in wg["metrics"]

    report = (out / "results.md").read_text()
    assert report.index("### winogrande_s") < report.index("### obqa")
    assert "mmlu_college_physics" in report and "arc_challenge" in report  # the OOD-set table of OBQA
    with (out / "results.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted((r["task"], r["method"]) for r in rows) == [
        ("obqa", "laplace_lora"), ("obqa", "mle"), ("winogrande_s", "laplace_lora"), ("winogrande_s", "mle"),
    ]
    assert (out / "reliability" / "obqa" / "mle.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "comparison-winogrande_s.png").is_file() and (out / "comparison-obqa.png").is_file()

    # the report rebuilds from the JSONs alone; the legacy spelling resumes the same runs
    assert main(["bench", "report", str(out / "runs"), "--out", str(tmp_path / "again"), "--no-figures"]) == 0
    rebuilt = (tmp_path / "again" / "results.md").read_text()
    assert rebuilt == report
    capsys.readouterr()
    (out / "runs/obqa/mle--seed0.json").unlink()  # rerun under --tasks: keeps OBQA's place in the suite
    assert main(["bench", "--suite", str(suite), "--data-dir", str(DATA), "--out", str(out), "--resume",
                 "--tasks", "obqa", "--no-figures"]) == 0
    assert capsys.readouterr().out.count(": kept ") == 1
    rerun = json.loads((out / "runs/obqa/mle--seed0.json").read_text())
    assert rerun["suite_position"] == {"task": 1, "method": 0}


def test_bench_run_refuses_tasks_not_in_the_suite(tmp_path, capsys):
    suite = tmp_path / "tiny-qa.yaml"
    suite.write_text(_TINY_SUITE)
    assert main(["bench", "run", str(suite), "--tasks", "boolq", "--data-dir", str(DATA)]) == 2
    assert "unknown task" in capsys.readouterr().err
    assert main(["bench", "run", str(suite), "--data", str(suite), "--data-dir", str(DATA)]) == 2
    assert "--data replaces" in capsys.readouterr().err


def test_bench_run_takes_any_local_causal_lm(tmp_path, offline_tokenizer, capsys):
    model_dir = tmp_path / "tiny-llama"
    tiny_decoder("llama", offline_tokenizer.vocab_size).save_pretrained(model_dir)
    offline_tokenizer.save_pretrained(model_dir)
    suite = tmp_path / "tiny-qa.yaml"
    suite.write_text(_TINY_SUITE)
    out = tmp_path / "out"
    code = main([
        "bench", "run", str(suite), "--tasks", "obqa", "--methods", "mle", "--model", str(model_dir),
        "--set", "backbone.model_class=causal_lm", "--set", "backbone.pooling=last_token",
        "--set", "backbone.padding_side=left", "--set", "adapter.target_modules=[q_proj,v_proj]",
        "--data-dir", str(DATA), "--out", str(out), "--no-figures",
    ])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "runs/obqa/mle--seed0.json").read_text())
    assert record["head_init"] == "lm_head"
    assert record["config"]["backbone"]["name_or_path"] == str(model_dir)
    assert 0.0 <= record["metrics"]["acc"] <= 1.0
