"""TextDataset with real-valued targets and text pairs; TargetScaler."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayeshead.data import TargetScaler, TextDataset
from bayeshead.types import GaussianPredictive


def test_a_float_target_is_never_cast_to_a_class():
    data = TextDataset(["a", "b", "c"], torch.tensor([0.25, 1.75, 4.5]))
    assert data.target_type == "regression"
    assert data.labels.dtype == torch.float32
    assert data.labels.tolist() == [0.25, 1.75, 4.5]
    batch = next(iter(data.batches(3)))
    assert batch.labels.tolist() == [0.25, 1.75, 4.5]


def test_python_floats_and_float64_are_regression_and_keep_their_precision():
    data = TextDataset(["a", "b"], [0.1, 2.0])
    assert data.target_type == "regression" and data.labels.dtype == torch.float32
    wide = TextDataset(["a", "b"], torch.tensor([0.1, 2.0], dtype=torch.float64))
    assert wide.labels.dtype == torch.float64 and wide.labels[0].item() == 0.1


def test_integer_labels_stay_classification_by_default():
    data = TextDataset(["a", "b", "c"], [0, 2, 1])
    assert data.target_type == "classification"
    assert data.labels.dtype == torch.int64 and data.num_classes == 3
    assert data.num_outputs == 3


def test_explicit_target_type_wins_over_the_dtype():
    reg = TextDataset(["a", "b"], [1, 3], target_type="regression")
    assert reg.labels.dtype == torch.float32 and reg.labels.tolist() == [1.0, 3.0]
    cls = TextDataset(["a", "b"], torch.tensor([1.0, 0.0]), target_type="classification")
    assert cls.labels.dtype == torch.int64 and cls.labels.tolist() == [1, 0]


def test_classification_refuses_fractional_labels_instead_of_truncating():
    with pytest.raises(ValueError, match="row 1.*0.5.*regression"):
        TextDataset(["a", "b"], torch.tensor([1.0, 0.5]), target_type="classification")


def test_multi_output_targets_keep_their_shape():
    y = torch.randn(4, 3, dtype=torch.float64)
    data = TextDataset(list("abcd"), y)
    assert data.labels.shape == (4, 3) and data.num_outputs == 3
    sub = data.subset([3, 1])
    assert torch.equal(sub.labels, y[[3, 1]])
    with pytest.raises(ValueError, match="regression"):
        _ = data.num_classes


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_targets_name_the_row(bad):
    with pytest.raises(ValueError, match=r"mydata: row 2"):
        TextDataset(["a", "b", "c"], [1.0, 2.0, bad], name="mydata")


def test_pairs_travel_through_subset_and_batches():
    data = TextDataset(["a1", "b1", "c1"], [0.5, 1.5, 2.5], text_pair=["a2", "b2", "c2"])
    assert data.is_paired
    sub = data.subset([2, 0])
    assert sub.texts == ["c1", "a1"] and sub.text_pair == ["c2", "a2"]
    assert sub.target_type == "regression"
    batches = list(data.batches(2, shuffle=True, generator=torch.Generator().manual_seed(0)))
    seen = set()
    for batch in batches:
        for a, b, y in zip(batch.texts, batch.text_pair, batch.labels.tolist(), strict=True):
            assert a[0] == b[0]
            assert y == {"a": 0.5, "b": 1.5, "c": 2.5}[a[0]]
            seen.add(a)
    assert seen == {"a1", "b1", "c1"}


def test_a_paired_batch_refuses_two_way_unpacking_so_the_pair_is_never_dropped():
    data = TextDataset(["a"], [1.0], text_pair=["b"])
    batch = next(iter(data.batches(1)))
    with pytest.raises(TypeError, match="text_pair"):
        texts, labels = batch


def test_single_text_batches_still_unpack_as_texts_and_labels():
    data = TextDataset(["x", "y", "z"], [0, 1, 0])
    texts, labels = next(iter(data.batches(2)))
    assert texts == ["x", "y"] and labels.tolist() == [0, 1]


def test_pair_length_and_type_are_checked():
    with pytest.raises(ValueError, match="2 texts but 1 text_pair"):
        TextDataset(["a", "b"], [0, 1], text_pair=["c"])
    with pytest.raises(TypeError, match="text_pair.*rows \\[1\\]"):
        TextDataset(["a", "b"], [0, 1], text_pair=["c", 3])


def test_target_scaler_round_trip_on_targets_and_predictive():
    y = torch.tensor([[1.0, 10.0], [3.0, 20.0], [5.0, 60.0]], dtype=torch.float64)
    scaler = TargetScaler.fit(y)
    z = scaler.transform(y)
    assert torch.allclose(z.mean(0), torch.zeros(2, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(z.std(0, unbiased=False), torch.ones(2, dtype=torch.float64))
    assert torch.allclose(scaler.inverse_transform(z), y)
    pred = GaussianPredictive(mean=z, var=torch.full_like(z, 0.25))
    back = scaler.inverse_predictive(pred)
    assert torch.allclose(back.mean, y)
    assert torch.allclose(back.var, 0.25 * y.var(0, unbiased=False).expand_as(y))


@settings(max_examples=30, deadline=None)
@given(
    loc=st.floats(-100, 100),
    log_scale=st.floats(-3, 3),
    mu=st.floats(-3, 3),
    var=st.floats(1e-3, 10),
    y=st.floats(-3, 3),
)
def test_scaled_nll_differs_by_the_log_jacobian(loc, log_scale, mu, var, y):
    """-log p(y_orig) = -log p(z) + log s: the density transforms with the Jacobian."""
    scale = math.exp(log_scale)
    scaler = TargetScaler(mean=torch.tensor([loc], dtype=torch.float64), std=torch.tensor([scale], dtype=torch.float64))
    pred = GaussianPredictive(mean=torch.tensor([[mu]], dtype=torch.float64), var=torch.tensor([[var]], dtype=torch.float64))
    z = torch.tensor([[y]], dtype=torch.float64)
    back = scaler.inverse_predictive(pred)
    lhs = back.nll(scaler.inverse_transform(z)).item()
    assert lhs == pytest.approx(pred.nll(z).item() + math.log(scale), rel=1e-9, abs=1e-9)


def test_scaler_state_dict_round_trip_and_errors():
    scaler = TargetScaler.fit(torch.tensor([1.0, 2.0, 4.0]))
    clone = TargetScaler.from_state_dict(scaler.state_dict())
    assert torch.equal(clone.mean, scaler.mean) and torch.equal(clone.std, scaler.std)
    with pytest.raises(ValueError, match="constant"):
        TargetScaler.fit(torch.tensor([2.0, 2.0, 2.0]))
    with pytest.raises(TypeError, match="floating"):
        TargetScaler.fit(torch.tensor([1, 2]))
