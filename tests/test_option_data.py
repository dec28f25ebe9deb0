"""Per-option formulation: segment operations, the per-question predictive, multiple-choice
datasets of option groups, and the option texts of the QA tasks."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayeshead.data import TextDataset
from bayeshead.heads.option_scoring import (
    OptionPredictive,
    option_positions,
    pad_segments,
    question_index,
    segment_log_softmax,
    unpad_segments,
)
from bayeshead.tasks.options import option_dataset, option_texts
from bayeshead.tasks.records import QARecord, letters
from bayeshead.tasks.task import QATask, task_config_class

counts_lists = st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=8)


@settings(max_examples=30, deadline=None)
@given(counts_lists, st.integers(0, 2**16))
def test_segment_log_softmax_is_the_softmax_of_each_question_alone(counts_list, seed):
    x = torch.randn(sum(counts_list), generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 5
    counts = torch.tensor(counts_list)
    expected = torch.cat([torch.log_softmax(part, 0) for part in torch.split(x, counts_list)])
    torch.testing.assert_close(segment_log_softmax(x, counts), expected)
    # batched leading dimension (samples)
    xs = torch.stack([x, 2 * x])
    torch.testing.assert_close(segment_log_softmax(xs, counts)[1], segment_log_softmax(2 * x, counts))
    assert question_index(counts).tolist() == [q for q, n in enumerate(counts_list) for _ in range(n)]
    assert option_positions(counts).tolist() == [k for n in counts_list for k in range(n)]
    padded = pad_segments(x, counts)
    assert padded.shape == (len(counts_list), max(counts_list))
    assert int(torch.isinf(padded).sum()) == len(counts_list) * max(counts_list) - sum(counts_list)
    torch.testing.assert_close(unpad_segments(padded, counts), x)


def test_segment_log_softmax_gradient_equals_per_question_gradient():
    x = torch.randn(7, dtype=torch.float64, requires_grad=True)
    counts = torch.tensor([3, 4])
    segment_log_softmax(x, counts)[torch.tensor([1, 5])].sum().backward()
    y = x.detach().clone().requires_grad_(True)
    (torch.log_softmax(y[:3], 0)[1] + torch.log_softmax(y[3:], 0)[2]).backward()
    torch.testing.assert_close(x.grad, y.grad)


def test_option_predictive_metrics_and_padding():
    logits = torch.tensor([0.0, 1.0, 2.0, -1.0, 0.5], dtype=torch.float64)
    counts = torch.tensor([2, 3])
    pred = OptionPredictive.from_logits(logits, counts)
    p0, p1 = torch.softmax(logits[:2], 0), torch.softmax(logits[2:], 0)
    torch.testing.assert_close(pred.question_sums(), torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(pred.nll(torch.tensor([1, 2])), -torch.stack([p0[1].log(), p1[2].log()]))
    entropy = torch.stack([-(p0 * p0.log()).sum(), -(p1 * p1.log()).sum()])
    torch.testing.assert_close(pred.entropy(), entropy)
    assert pred.argmax().tolist() == [1, 0]
    cat = pred.padded(5)
    assert cat.probs.shape == (2, 5)
    torch.testing.assert_close(cat.probs[0, :2], p0)
    assert cat.probs[0, 2:].abs().sum() == 0 and cat.probs[1, 3:].abs().sum() == 0
    torch.testing.assert_close(cat.nll(torch.tensor([1, 2])), pred.nll(torch.tensor([1, 2])))
    torch.testing.assert_close(cat.entropy(), entropy)
    with pytest.raises(ValueError, match="give at least 3"):
        pred.padded(2)


def test_option_predictive_from_samples_mutual_information():
    # two samples that disagree completely: mixture is uniform, each sample certain -> MI = log 2
    z = torch.tensor([[50.0, -50.0, 0.0, 0.0], [-50.0, 50.0, 0.0, 0.0]], dtype=torch.float64)
    pred = OptionPredictive.from_sample_logits(z, torch.tensor([2, 2]))
    torch.testing.assert_close(pred.probs, torch.full((4,), 0.5, dtype=torch.float64))
    torch.testing.assert_close(pred.mutual_information(), torch.tensor([math.log(2), 0.0], dtype=torch.float64))
    both = OptionPredictive.cat([pred, pred])
    assert both.counts.tolist() == [2, 2, 2, 2] and both.samples.shape == (2, 8)


def _dataset() -> TextDataset:
    groups = [tuple(f"q{q} o{k}" for k in range(n)) for q, n in enumerate([2, 5, 3, 4, 2, 3, 4])]
    return TextDataset(groups, [1, 4, 0, 3, 0, 2, 1])


def test_multiple_choice_dataset_keeps_groups_through_subsets_and_batches():
    data = _dataset()
    assert data.target_type == "multiple_choice" and data.is_multiple_choice  # inferred from the tuples
    assert len(data) == 7 and data.num_classes == 5 and data.class_names == ["0", "1", "2", "3", "4"]
    assert data.texts[1] == tuple(f"q1 o{k}" for k in range(5))
    assert len(data.flat_texts) == 23 and data.flat_texts[2:4] == ["q1 o0", "q1 o1"]
    sub = data.subset([3, 0])
    assert sub.texts == [data.texts[3], data.texts[0]] and sub.labels.tolist() == [3, 1]
    batches = list(data.batches(3))
    assert [len(b.texts) for b in batches] == [3, 3, 1] and batches[0].texts[1] == data.texts[1]


def test_multiple_choice_dataset_refuses_inconsistent_groups():
    with pytest.raises(ValueError, match="row 0 has 2 options but label 2"):
        TextDataset([("a", "b")], [2])
    with pytest.raises(ValueError, match="example 1 has 1 option"):
        TextDataset([("a", "b"), ("c",)], [0, 0])
    with pytest.raises(TypeError, match="example 1 is a str"):
        TextDataset([("a", "b"), "c"], [0, 0])
    with pytest.raises(ValueError, match="class_names name 2 positions"):
        TextDataset([("a", "b", "c")], [0], class_names=["A", "B"])
    with pytest.raises(ValueError, match="target_type='multiple_choice'"):
        TextDataset([("a", "b")], [0], target_type="classification")
    with pytest.raises(TypeError, match="needs option groups"):
        TextDataset(["a", "b"], [0, 1], target_type="multiple_choice")
    with pytest.raises(ValueError, match="no text_pair"):
        TextDataset([("a", "b")], [0], text_pair=["x"])


def _record(question: str, choices: tuple[str, ...], answer: int, passage: str | None = None) -> QARecord:
    return QARecord("r", question, choices, letters(len(choices)), answer, passage)


def test_option_texts_per_task_family():
    wino = _record("The trophy doesn't fit in the case because the _ is too big.", ("trophy", "case"), 0)
    assert option_texts("winogrande_s", wino) == [
        "The trophy doesn't fit in the case because the trophy is too big.",
        "The trophy doesn't fit in the case because the case is too big.",
    ]
    arc = _record("What melts ice?", ("heat", "cold", "salt water"), 0)
    assert option_texts("arc_easy", arc)[2] == "Question: What melts ice?\nAnswer: salt water"
    boolq = _record("is the sky blue", ("true", "false"), 0, passage="x" * 2000)
    texts = option_texts("boolq", boolq)
    assert texts[1] == f"Passage: {'x' * 1024}\nQuestion: is the sky blue\nAnswer: false"
    with pytest.raises(ValueError, match="exactly one '_' blank"):
        option_texts("winogrande_m", _record("no blank here", ("a", "b"), 0))


def test_qa_task_builds_the_per_option_dataset_with_variable_counts():
    records = [
        _record("q3?", ("a", "b", "c"), 2),
        _record("q5?", ("a", "b", "c", "d", "e"), 4),
        _record("q4?", ("a", "b", "c", "d"), 0),
    ]
    task = QATask(task_config_class("arc_challenge")(formulation="options"))
    assert task.formulation == "options"
    data = task.dataset(records, "train")  # the formulation decides the dataset
    assert [len(g) for g in data.texts] == [3, 5, 4] and data.labels.tolist() == [2, 4, 0]
    assert data.name == "arc_challenge/train" and data.texts[1][0] == "Question: q5?\nAnswer: a"
    assert data.class_names == ["A", "B", "C", "D", "E"] and data.target_type == "multiple_choice"
    assert data.texts == option_dataset("arc_challenge", records, "train").texts
    assert QATask("obqa").formulation == "letter"  # letter stays the default
    with pytest.raises(ValueError, match="formulation"):
        task_config_class("obqa")(formulation="cloze")
