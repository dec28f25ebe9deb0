"""bayeshead.metrics against torchmetrics / scikit-learn / direct formulas, edge cases, streaming."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
    roc_curve,
)
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_calibration_error,
)

from bayeshead.metrics import (
    NLL_FLOOR,
    ClassificationMetrics,
    accuracy,
    adaptive_ece,
    aupr,
    aurc,
    auroc,
    brier,
    ece,
    fpr_at_tpr,
    nll,
    ood_metrics,
    ood_scores,
    reliability_bins,
)

# derandomize: the same examples on every run, so CI never flakes on a rare draw.
FAST = settings(max_examples=20, deadline=None, derandomize=True)

cases = st.tuples(
    st.integers(1, 160),  # N
    st.integers(2, 8),  # C
    st.integers(0, 2**31 - 1),  # seed
    st.floats(0.1, 6.0),  # logit scale: from nearly uniform to confident
)


def make_case(n: int, c: int, seed: int, scale: float, float32: bool = False):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(n, c, generator=g, dtype=torch.float64) * scale, dim=-1)
    if float32:
        # torchmetrics casts confidences to float32: give both sides the same numbers.
        probs = probs.float().double()
    targets = torch.randint(0, c, (n,), generator=g)
    return probs, targets


def tm_ece(probs, targets, n_bins=15):
    c = probs.shape[1]
    return float(
        multiclass_calibration_error(probs, targets, num_classes=c, n_bins=n_bins, norm="l1")
    )


def make_scores(n_id: int, n_ood: int, seed: int, levels: int | None):
    """ID ~ N(0, 1), OOD ~ N(1, 1); rounded to `levels` values per unit to create ties."""
    g = torch.Generator().manual_seed(seed)
    id_scores = torch.randn(n_id, generator=g, dtype=torch.float64)
    ood_scores = torch.randn(n_ood, generator=g, dtype=torch.float64) + 1.0
    if levels is not None:
        id_scores = torch.round(id_scores * levels) / levels
        ood_scores = torch.round(ood_scores * levels) / levels
    return id_scores, ood_scores


score_cases = st.tuples(
    st.integers(1, 80),
    st.integers(1, 80),
    st.integers(0, 2**31 - 1),
    st.sampled_from([None, 1, 3, 10]),
)


def sklearn_fpr95(id_scores, ood_scores):
    y = np.r_[np.zeros(len(id_scores)), np.ones(len(ood_scores))]
    fpr, tpr, _ = roc_curve(
        y, np.r_[id_scores.numpy(), ood_scores.numpy()], drop_intermediate=False
    )
    return float(fpr[tpr >= 0.95].min())


# --------------------------------------------------------------------------- agreement


@FAST
@given(cases)
def test_accuracy_matches_torchmetrics(case):
    probs, targets = make_case(*case)
    expected = multiclass_accuracy(probs, targets, num_classes=probs.shape[1], average="micro")
    assert accuracy(probs, targets) == pytest.approx(float(expected), abs=1e-6)  # float32 there
    correct = (probs.argmax(1) == targets).sum().item()
    assert accuracy(probs, targets) == correct / len(targets)


@FAST
@given(cases)
def test_ece_matches_torchmetrics(case):
    probs, targets = make_case(*case, float32=True)
    assert ece(probs, targets) == pytest.approx(tm_ece(probs, targets), abs=1e-6)


@FAST
@given(cases, st.integers(1, 30))
def test_ece_matches_torchmetrics_for_other_bin_counts(case, n_bins):
    probs, targets = make_case(*case, float32=True)
    # bin counts whose float32 and float64 edges agree on these inputs; all do for random data
    assert ece(probs, targets, n_bins) == pytest.approx(tm_ece(probs, targets, n_bins), abs=1e-6)


@FAST
@given(cases)
def test_nll_matches_sklearn_log_loss(case):
    probs, targets = make_case(*case)
    c = probs.shape[1]
    expected = log_loss(targets.numpy(), probs.numpy(), labels=list(range(c)))
    assert nll(probs, targets) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert nll(None, targets, log_probs=probs.log()) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_nll_prefers_log_probs_over_underflowed_probs():
    logits = torch.tensor([[0.0, -800.0]], dtype=torch.float64)
    log_probs = torch.log_softmax(logits, -1)
    probs = log_probs.exp()  # the second probability underflows to 0
    target = torch.tensor([1])
    assert probs[0, 1] == 0.0
    assert nll(probs, target, log_probs=log_probs) == pytest.approx(800.0)
    assert nll(probs, target) == pytest.approx(-math.log(NLL_FLOOR))  # floored, not clipped at 1e-7
    assert nll(probs, target) > 700.0


@FAST
@given(cases)
def test_brier_matches_numpy_and_sklearn(case):
    probs, targets = make_case(*case)
    n, c = probs.shape
    p = probs.numpy()
    onehot = np.eye(c)[targets.numpy()]
    direct = float(np.mean(np.sum((p - onehot) ** 2, axis=1)))
    assert brier(probs, targets) == pytest.approx(direct, rel=1e-12, abs=1e-15)
    # sklearn: [0, 2] multiclass Brier for C >= 3; halved ("auto") for two classes.
    unscaled = brier_score_loss(targets.numpy(), p, labels=list(range(c)), scale_by_half=False)
    assert brier(probs, targets) == pytest.approx(unscaled, rel=1e-12, abs=1e-15)
    auto = brier_score_loss(targets.numpy(), p, labels=list(range(c)))
    factor = 2.0 if c == 2 else 1.0
    assert brier(probs, targets) == pytest.approx(factor * auto, rel=1e-12, abs=1e-15)


@FAST
@given(score_cases)
def test_ood_metrics_match_sklearn(case):
    n_id, n_ood, seed, levels = case
    id_scores, ood_scores_ = make_scores(n_id, n_ood, seed, levels)
    y = np.r_[np.zeros(n_id), np.ones(n_ood)]
    s = np.r_[id_scores.numpy(), ood_scores_.numpy()]
    assert auroc(id_scores, ood_scores_) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert aupr(id_scores, ood_scores_) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert fpr_at_tpr(id_scores, ood_scores_) == pytest.approx(
        sklearn_fpr95(id_scores, ood_scores_), abs=1e-12
    )


def test_fpr_at_tpr_other_levels_and_brute_force():
    id_scores, ood_scores_ = make_scores(40, 30, seed=3, levels=2)
    for level in (0.1, 0.5, 0.9, 1.0):
        brute = min(
            float((id_scores >= t).double().mean())
            for t in torch.cat([id_scores, ood_scores_]).unique()
            if float((ood_scores_ >= t).double().mean()) >= level
        )
        assert fpr_at_tpr(id_scores, ood_scores_, level) == pytest.approx(brute, abs=1e-15)


# --------------------------------------------------------------------------- ECE bin convention


@pytest.mark.parametrize("k", [1, 2, 4, 5, 8, 9, 10, 12, 13, 14])
def test_confidence_at_an_edge_goes_to_the_bin_starting_there_as_in_torchmetrics(k):
    edge = float(torch.linspace(0, 1, 16, dtype=torch.float64)[k])
    probs = _top_label_rows([edge], c=20)
    bins = reliability_bins(probs, torch.tensor([0]))
    assert bins.counts[k] == 1 and sum(bins.counts) == 1
    # With a second, wrong example just below the edge the ECE tells whether the two share a
    # bin; torchmetrics agrees at these edges (its float32 edges round the same way).
    pair = _top_label_rows([edge, edge - 0.01], c=20)
    targets = torch.tensor([0, 1])
    separate = 0.5 * (1 - edge) + 0.5 * (edge - 0.01)
    assert ece(pair, targets) == pytest.approx(separate, abs=1e-12)
    assert ece(pair, targets) == pytest.approx(tm_ece(pair, targets), abs=1e-6)


def _top_label_rows(confidences: list[float], c: int = 10) -> torch.Tensor:
    """Rows whose class 0 has the given probability, the rest spread evenly."""
    probs = torch.zeros(len(confidences), c, dtype=torch.float64)
    for row, conf in enumerate(confidences):
        probs[row] = (1.0 - conf) / (c - 1)
        probs[row, 0] = conf
    return probs


@pytest.mark.parametrize("value", [0.2, 0.4, 7 / 15])
def test_edges_where_torchmetrics_float32_edges_differ(value):
    """torchmetrics' float32 edges 0.2, 0.4, 7/15 round up, so it bins these values one lower."""
    probs = _top_label_rows([value, value + 0.01])
    targets = torch.tensor([0, 1])  # first right, second wrong
    bins = reliability_bins(probs, targets)
    assert bins.counts[round(value * 15)] == 2  # one bin here: [value, value + 1/15)
    shared = abs(0.5 - (2 * value + 0.01) / 2)
    assert ece(probs, targets) == pytest.approx(shared, abs=1e-12)
    separate = 0.5 * abs(1 - value) + 0.5 * abs(0 - (value + 0.01))
    assert tm_ece(probs, targets) == pytest.approx(separate, abs=1e-6), (
        "torchmetrics changed its edges"
    )


def test_confidence_one_falls_in_the_last_bin():
    probs = torch.tensor([[1.0, 0.0, 0.0], [0.95, 0.05, 0.0]], dtype=torch.float64)
    targets = torch.tensor([1, 0])  # conf 1.0 wrong, conf 0.95 right
    bins = reliability_bins(probs, targets)
    assert bins.counts[-1] == 2 and sum(bins.counts) == 2
    assert ece(probs, targets) == pytest.approx(abs(0.5 - 0.975), abs=1e-12)
    # torchmetrics keeps 1.0 in a sixteenth bin of its own (documented difference):
    assert tm_ece(probs, targets) == pytest.approx(0.5 * 1.0 + 0.5 * 0.05, abs=1e-6)
    # ... and agrees whenever 1.0 has the last bin to itself.
    alone = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]], dtype=torch.float64)
    assert ece(alone, targets) == pytest.approx(tm_ece(alone, targets), abs=1e-6)


def test_reliability_bins_contents():
    probs = torch.tensor(
        [[0.9, 0.1], [0.95, 0.05], [0.6, 0.4], [0.55, 0.45], [0.5, 0.5]], dtype=torch.float64
    )
    targets = torch.tensor([0, 1, 0, 0, 1])
    bins = reliability_bins(probs, targets, n_bins=5)
    assert bins.edges == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert bins.counts == (0, 0, 2, 1, 2)  # 0.6 sits on an edge: bin [0.6, 0.8)
    # the tie [0.5, 0.5] predicts class 0 (lowest index), so the last example is wrong
    assert bins.mean_confidence[2] == pytest.approx(0.525) and bins.accuracy[2] == pytest.approx(
        0.5
    )
    assert bins.mean_confidence[3] == pytest.approx(0.6) and bins.accuracy[3] == pytest.approx(1.0)
    assert bins.mean_confidence[4] == pytest.approx(0.925) and bins.accuracy[4] == pytest.approx(
        0.5
    )
    assert math.isnan(bins.accuracy[0]) and math.isnan(bins.mean_confidence[1])
    expected = (2 * 0.025 + 1 * 0.4 + 2 * 0.425) / 5
    assert bins.ece == pytest.approx(expected)
    assert ece(probs, targets, n_bins=5) == pytest.approx(expected)


# --------------------------------------------------------------------------- edge cases


def test_confidence_exactly_zero_and_one():
    onehot = torch.eye(3, dtype=torch.float64)
    right = torch.tensor([0, 1, 2])
    wrong = torch.tensor([1, 2, 0])
    assert accuracy(onehot, right) == 1.0 and accuracy(onehot, wrong) == 0.0
    assert nll(onehot, right) == 0.0
    assert nll(onehot, wrong) == pytest.approx(-math.log(NLL_FLOOR))
    assert nll(onehot, wrong, log_probs=onehot.log()) == math.inf
    assert brier(onehot, right) == 0.0 and brier(onehot, wrong) == 2.0
    assert ece(onehot, right) == 0.0 and ece(onehot, wrong) == 1.0
    assert ece(onehot, wrong) == pytest.approx(tm_ece(onehot, wrong))
    assert aurc(onehot, right) == 0.0 and aurc(onehot, wrong) == 1.0
    assert adaptive_ece(onehot, wrong) == 1.0
    # a probability of exactly 0 is a valid input everywhere
    scores = ood_scores(onehot)
    assert torch.equal(scores["maxprob"], torch.zeros(3, dtype=torch.float64))
    assert torch.equal(scores["entropy"], torch.zeros(3, dtype=torch.float64))


def test_single_class_present_in_targets():
    probs, _ = make_case(50, 4, seed=7, scale=2.0)
    targets = torch.zeros(50, dtype=torch.long)
    assert accuracy(probs, targets) == pytest.approx(
        float(multiclass_accuracy(probs, targets, num_classes=4, average="micro"))
    )
    assert ece(probs, targets) == pytest.approx(tm_ece(probs, targets), abs=1e-6)
    assert nll(probs, targets) == pytest.approx(
        log_loss(targets.numpy(), probs.numpy(), labels=[0, 1, 2, 3])
    )
    assert brier(probs, targets) == pytest.approx(
        brier_score_loss(targets.numpy(), probs.numpy(), labels=[0, 1, 2, 3])
    )


@pytest.mark.parametrize("target", [0, 1])
def test_ece_of_a_single_example(target):
    probs = torch.tensor([[0.7, 0.2, 0.1]], dtype=torch.float64)
    targets = torch.tensor([target])
    expected = abs((1.0 if target == 0 else 0.0) - 0.7)
    assert ece(probs, targets) == pytest.approx(expected)
    assert ece(probs, targets) == pytest.approx(tm_ece(probs, targets), abs=1e-6)
    assert adaptive_ece(probs, targets) == pytest.approx(expected)
    assert aurc(probs, targets) == float(target != 0)


def test_tied_scores():
    same = torch.full((7,), 0.3, dtype=torch.float64)
    other = torch.full((5,), 0.3, dtype=torch.float64)
    assert auroc(same, other) == 0.5
    assert aupr(same, other) == pytest.approx(5 / 12)  # precision of flagging everything
    assert fpr_at_tpr(same, other) == 1.0
    y = np.r_[np.zeros(7), np.ones(5)]
    assert aupr(same, other) == pytest.approx(average_precision_score(y, np.full(12, 0.3)))


def test_perfect_separation():
    id_scores = torch.linspace(0, 1, 30, dtype=torch.float64)
    ood = torch.linspace(2, 3, 20, dtype=torch.float64)
    assert auroc(id_scores, ood) == 1.0 and aupr(id_scores, ood) == 1.0
    assert fpr_at_tpr(id_scores, ood) == 0.0
    assert auroc(ood, id_scores) == 0.0  # the inverted detector


# --------------------------------------------------------------------------- AURC


def naive_aurc(confidence: list[float], correct: list[bool]) -> float:
    ranked = sorted(zip(confidence, correct, strict=True), key=lambda t: -t[0])
    errors, risks = 0, []
    for k, (_, ok) in enumerate(ranked, start=1):
        errors += not ok
        risks.append(errors / k)
    return sum(risks) / len(risks)


def test_aurc_matches_the_plain_formula_without_ties():
    probs, targets = make_case(97, 5, seed=11, scale=2.0)
    confidence, prediction = probs.max(1)
    expected = naive_aurc(confidence.tolist(), (prediction == targets).tolist())
    assert aurc(probs, targets) == pytest.approx(expected, abs=1e-12)


def test_aurc_with_ties_is_the_mean_over_tie_orderings():
    # confidences 0.9 (x3: right, wrong, right), 0.6 (x2: wrong, right), 0.5 (x1: right)
    conf = [0.9, 0.9, 0.9, 0.6, 0.6, 0.55]
    correct = [True, False, True, False, True, True]
    probs = torch.tensor([[c, 1 - c] for c in conf], dtype=torch.float64)
    targets = torch.tensor([0 if ok else 1 for ok in correct])
    # average of the plain formula over every order of the tied examples
    values = []
    for perm in itertools.permutations(range(6)):
        order = [(conf[i], correct[i]) for i in perm]
        ranked = sorted(order, key=lambda t: -t[0])  # stable: keeps `perm` within ties
        errors, total = 0, 0.0
        for k, (_, ok) in enumerate(ranked, start=1):
            errors += not ok
            total += errors / k
        values.append(total / 6)
    assert aurc(probs, targets) == pytest.approx(sum(values) / len(values), abs=1e-12)
    shuffled = torch.tensor([5, 3, 1, 0, 4, 2])
    assert aurc(probs[shuffled], targets[shuffled]) == pytest.approx(
        aurc(probs, targets), abs=1e-15
    )


def test_aurc_known_values():
    # three examples, most confident one wrong: risks 1, 1/2, 1/3
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3]], dtype=torch.float64)
    assert aurc(probs, torch.tensor([1, 0, 0])) == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    # least confident one wrong: risks 0, 0, 1/3
    assert aurc(probs, torch.tensor([0, 0, 1])) == pytest.approx(1 / 9)


# --------------------------------------------------------------------------- adaptive ECE


def test_adaptive_ece_by_hand():
    conf = [0.55, 0.6, 0.7, 0.8, 0.9, 0.95]
    correct = [False, True, True, False, True, True]
    probs = torch.tensor([[c, 1 - c] for c in conf], dtype=torch.float64)
    targets = torch.tensor([0 if ok else 1 for ok in correct])
    # 3 equal-mass bins of 2: (0.55, 0.6), (0.7, 0.8), (0.9, 0.95)
    expected = (abs(0.5 - 0.575) + abs(0.5 - 0.75) + abs(1.0 - 0.925)) / 3
    assert adaptive_ece(probs, targets, n_bins=3) == pytest.approx(expected)
    # 4 bins of sizes 2, 2, 1, 1 (numpy.array_split)
    expected4 = (2 * abs(0.5 - 0.575) + 2 * abs(0.5 - 0.75) + abs(1 - 0.9) + abs(1 - 0.95)) / 6
    assert adaptive_ece(probs, targets, n_bins=4) == pytest.approx(expected4)
    # more bins than examples: one example per bin
    every = sum(abs(float(ok) - c) for c, ok in zip(conf, correct, strict=True)) / 6
    assert adaptive_ece(probs, targets, n_bins=15) == pytest.approx(every)


def test_adaptive_ece_equals_ece_when_equal_width_bins_hold_equal_counts():
    g = torch.Generator().manual_seed(0)
    # 4 confidences inside each of the bins [0.6, 0.8) and [0.8, 1.0) of a 5-bin ECE
    conf = torch.cat(
        [0.6 + 0.2 * torch.rand(4, generator=g), 0.8 + 0.2 * torch.rand(4, generator=g)]
    ).double()
    probs = torch.stack([conf, 1 - conf], dim=1)
    targets = torch.randint(0, 2, (8,), generator=g)
    assert adaptive_ece(probs, targets, n_bins=2) == pytest.approx(
        ece(probs, targets, n_bins=5), abs=1e-12
    )


def test_adaptive_ece_orders_tied_confidences_wrong_first():
    probs = torch.tensor([[0.8, 0.2]] * 4, dtype=torch.float64)
    # bins {wrong, wrong} and {right, right}, whatever the input order
    expected = 0.5 * abs(0.0 - 0.8) + 0.5 * abs(1.0 - 0.8)
    for targets in ([0, 1, 0, 1], [1, 0, 1, 0], [0, 0, 1, 1]):
        assert adaptive_ece(probs, torch.tensor(targets), n_bins=2) == pytest.approx(expected)


def test_adaptive_ece_ignores_example_order():
    probs, targets = make_case(60, 3, seed=5, scale=1.0)
    probs = torch.round(probs * 10) / 10  # many ties
    probs = probs / probs.sum(1, keepdim=True)
    perm = torch.randperm(60, generator=torch.Generator().manual_seed(1))
    assert adaptive_ece(probs[perm], targets[perm]) == adaptive_ece(probs, targets)


# --------------------------------------------------------------------------- OOD scores


def test_ood_scores_and_mutual_information():
    from bayeshead.types import CategoricalPredictive

    g = torch.Generator().manual_seed(2)
    logits = torch.randn(6, 10, 4, generator=g, dtype=torch.float64) * 2  # (S, N, C)
    predictive = CategoricalPredictive.from_sample_logits(logits)
    scores = ood_scores(predictive.probs, predictive.samples)
    assert torch.allclose(scores["mi"], predictive.mutual_information(), atol=1e-12)
    assert torch.allclose(scores["entropy"], predictive.entropy(), atol=1e-12)
    assert torch.allclose(scores["maxprob"], 1 - predictive.probs.max(1).values)
    # a single sample has no epistemic part
    single = torch.softmax(torch.randn(1, 10, 4, generator=g, dtype=torch.float64), -1)
    assert torch.allclose(
        ood_scores(single[0], single)["mi"], torch.zeros(10, dtype=torch.float64), atol=1e-12
    )


def test_ood_metrics_keys_and_values():
    g = torch.Generator().manual_seed(4)
    id_samples = torch.softmax(3 * torch.randn(5, 40, 3, generator=g, dtype=torch.float64), -1)
    ood_samples = torch.softmax(0.5 * torch.randn(5, 30, 3, generator=g, dtype=torch.float64), -1)
    id_probs, ood_probs = id_samples.mean(0), ood_samples.mean(0)
    plain = ood_metrics(id_probs, ood_probs)
    names = ["maxprob", "entropy"]
    assert set(plain) == {f"{m}_{s}" for m in ("auroc", "aupr", "fpr95") for s in names}
    full = ood_metrics(id_probs, ood_probs, id_samples, ood_samples)
    assert set(full) == set(plain) | {"auroc_mi", "aupr_mi", "fpr95_mi"}
    id_max = 1 - id_probs.max(1).values
    ood_max = 1 - ood_probs.max(1).values
    assert full["auroc_maxprob"] == auroc(id_max, ood_max)
    assert full["fpr95_maxprob"] == fpr_at_tpr(id_max, ood_max)
    assert all(isinstance(v, float) for v in full.values())
    assert plain["auroc_entropy"] > 0.7  # the flatter OOD predictive is detected
    with pytest.raises(ValueError, match="both the ID and the OOD"):
        ood_metrics(id_probs, ood_probs, id_samples=id_samples)
    with pytest.raises(ValueError, match="same classes"):
        ood_metrics(id_probs, torch.full((3, 5), 0.2, dtype=torch.float64))


# --------------------------------------------------------------------------- streaming


@FAST
@given(cases, st.lists(st.integers(1, 40), min_size=1, max_size=6), st.booleans())
def test_accumulator_equals_one_shot_on_the_concatenation(case, sizes, use_log_probs):
    probs, targets = make_case(*case)
    probs = torch.round(probs * 20) / 20 + 0.01  # ties in confidence, no zero probability
    probs = probs / probs.sum(1, keepdim=True)
    metrics = ClassificationMetrics()
    start = 0
    for size in itertools.cycle(sizes):
        if start >= probs.shape[0]:
            break
        batch = slice(start, start + size)
        if use_log_probs:
            metrics.update(None, targets[batch], log_probs=probs[batch].log())
        else:
            # float32 probabilities and int32 targets are converted
            metrics.update(probs[batch].float(), targets[batch].int())
        start += size
    # the accumulator sees exp(log p) or float32 p: ties in confidence depend on the last bit
    reference = probs.log().exp() if use_log_probs else probs.float().double()
    log_probs = probs.log() if use_log_probs else None
    out = metrics.compute()
    assert metrics.count == probs.shape[0]
    expected = {
        "acc": accuracy(reference, targets),
        "nll": nll(reference, targets, log_probs=log_probs),
        "brier": brier(reference, targets),
        "ece": ece(reference, targets),
        "adaptive_ece": adaptive_ece(reference, targets),
        "aurc": aurc(reference, targets),
    }
    assert set(out) == set(expected)
    for key, value in expected.items():
        assert out[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
    streamed, one_shot = metrics.reliability_bins(), reliability_bins(reference, targets)
    assert streamed.counts == one_shot.counts and streamed.edges == one_shot.edges
    np.testing.assert_allclose(streamed.mean_confidence, one_shot.mean_confidence, rtol=1e-12)
    np.testing.assert_allclose(streamed.accuracy, one_shot.accuracy, rtol=1e-12)


def test_accumulator_is_sample_weighted_not_a_mean_of_batch_means():
    probs = torch.tensor([[0.9, 0.1]] * 3 + [[0.2, 0.8]], dtype=torch.float64)
    targets = torch.tensor([0, 0, 0, 0])
    metrics = ClassificationMetrics()
    metrics.update(probs[:3], targets[:3])  # batch accuracy 1
    metrics.update(probs[3:], targets[3:])  # batch accuracy 0
    assert metrics.compute()["acc"] == 0.75  # not 0.5


def test_accumulator_errors_and_reset():
    metrics = ClassificationMetrics()
    with pytest.raises(ValueError, match="call update"):
        metrics.compute()
    metrics.update(torch.full((2, 3), 1 / 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="this batch has 4 classes but earlier batches had 3"):
        metrics.update(torch.full((2, 4), 0.25), torch.tensor([0, 1]))
    assert metrics.count == 2
    metrics.reset()
    assert metrics.count == 0 and metrics.num_classes is None
    metrics.update(torch.full((2, 4), 0.25), torch.tensor([0, 3]))
    assert metrics.compute()["acc"] == 0.5
    with pytest.raises(ValueError, match="positive integer"):
        ClassificationMetrics(n_bins=0)


# --------------------------------------------------------------------------- properties


@FAST
@given(cases)
def test_metric_ranges(case):
    probs, targets = make_case(*case)
    assert 0.0 <= ece(probs, targets) <= 1.0
    assert 0.0 <= adaptive_ece(probs, targets) <= 1.0
    assert 0.0 <= aurc(probs, targets) <= 1.0
    assert 0.0 <= brier(probs, targets) <= 2.0
    assert nll(probs, targets) >= 0.0
    assert 0.0 <= accuracy(probs, targets) <= 1.0


@FAST
@given(score_cases)
def test_ood_ranges_and_symmetry(case):
    id_scores, ood_scores_ = make_scores(*case)
    value = auroc(id_scores, ood_scores_)
    assert 0.0 <= value <= 1.0
    assert auroc(ood_scores_, id_scores) == pytest.approx(1.0 - value, abs=1e-12)
    assert 0.0 < aupr(id_scores, ood_scores_) <= 1.0
    assert 0.0 <= fpr_at_tpr(id_scores, ood_scores_) <= 1.0
    # shifting the OOD scores far above separates perfectly
    assert auroc(id_scores, ood_scores_ + 100.0) == 1.0


# --------------------------------------------------------------------------- validation


def test_validation_messages():
    probs = torch.full((4, 3), 1 / 3)
    targets = torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match=r"targets has 3 entries but the predictions have 4"):
        accuracy(probs, targets[:3])
    with pytest.raises(ValueError, match=r"must sum to 1 .* row 0 sums to 1\.5.*softmax"):
        ece(torch.full((2, 3), 0.5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\) for 3 classes, found 3"):
        nll(probs, torch.tensor([0, 1, 3, 0]))
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\).*found -1"):
        brier(probs, torch.tensor([0, -1, 2, 0]))
    with pytest.raises(ValueError, match="empty"):
        ece(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    bad = probs.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN in 1 of 4 rows .*row 2"):
        aurc(bad, targets)
    with pytest.raises(ValueError, match=r"shape \(N, C\)"):
        accuracy(torch.full((3,), 1 / 3), torch.tensor([0]))
    with pytest.raises(TypeError, match=r"integer class indices .*\.long\(\)"):
        accuracy(probs, targets.float())
    with pytest.raises(TypeError, match="torch.Tensor"):
        accuracy(probs.tolist(), targets)
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\]"):
        accuracy(torch.tensor([[1.5, -0.5]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="log_softmax"):
        nll(None, targets, log_probs=torch.zeros(4, 3))
    with pytest.raises(ValueError, match="neither"):
        nll(None, targets)
    with pytest.raises(ValueError, match="differ"):
        nll(probs, targets, log_probs=torch.log_softmax(3 * torch.randn(4, 3), -1))
    with pytest.raises(ValueError, match="id_scores contains 1 NaN"):
        auroc(torch.tensor([0.1, float("nan")]), torch.tensor([0.2]))
    with pytest.raises(ValueError, match="ood_scores is empty"):
        aupr(torch.tensor([0.1]), torch.tensor([]))
    with pytest.raises(ValueError, match="1-D"):
        fpr_at_tpr(torch.zeros(2, 2), torch.zeros(2))
    with pytest.raises(ValueError, match=r"tpr must be in \(0, 1\]"):
        fpr_at_tpr(torch.zeros(2), torch.ones(2), tpr=0.0)
    with pytest.raises(ValueError, match=r"samples must have shape \(S, 4, 3\)"):
        ood_scores(probs, torch.full((2, 5, 3), 1 / 3))
    with pytest.raises(ValueError, match="n_bins must be a positive integer"):
        ece(probs, targets, n_bins=0)


def test_float32_probabilities_with_small_rounding_are_accepted():
    logits = torch.randn(64, 10, generator=torch.Generator().manual_seed(0)) * 4
    probs = torch.softmax(logits, -1)  # float32, rows sum to 1 within ~1e-7
    targets = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(1))
    assert isinstance(ece(probs, targets), float)
    assert nll(probs, targets, log_probs=torch.log_softmax(logits, -1)) == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits.double(), targets)), rel=1e-6
    )
