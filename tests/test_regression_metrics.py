"""Regression metrics against scipy, closed forms and numerical integrals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from bayeshead.metrics import ood
from bayeshead.metrics.regression import (
    calibration_curve,
    crps_gaussian,
    gaussian_nll,
    interval_coverage,
    mae,
    pearson,
    regression_calibration_error,
    regression_metrics,
    rmse,
    spearman,
    variance_ood_metrics,
)


@pytest.fixture(scope="module")
def preds():
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(300, generator=g, dtype=torch.float64)
    var = 0.2 + torch.rand(300, generator=g, dtype=torch.float64)
    y = mean + var.sqrt() * torch.randn(300, generator=g, dtype=torch.float64) + 0.1
    return mean, var, y


def test_point_metrics_match_numpy_and_scipy(preds):
    mean, _, y = preds
    m, t = mean.numpy(), y.numpy()
    assert rmse(mean, y) == pytest.approx(math.sqrt(np.mean((t - m) ** 2)), rel=1e-12)
    assert mae(mean, y) == pytest.approx(np.mean(np.abs(t - m)), rel=1e-12)
    assert pearson(mean, y) == pytest.approx(stats.pearsonr(m, t).statistic, rel=1e-12)
    assert spearman(mean, y) == pytest.approx(stats.spearmanr(m, t).statistic, rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=3, max_size=40))
def test_spearman_with_ties_matches_scipy(pairs):
    a = torch.tensor([p[0] for p in pairs], dtype=torch.float64)
    b = torch.tensor([p[1] for p in pairs], dtype=torch.float64)
    if a.unique().numel() < 2 or b.unique().numel() < 2:
        with pytest.raises(ValueError, match="constant"):
            spearman(a, b)
        return
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a.numpy(), b.numpy()).statistic, rel=1e-9, abs=1e-12)


def test_multi_output_correlations_average_the_columns(preds):
    mean, var, y = preds
    m2 = torch.stack([mean, -mean], 1)
    y2 = torch.stack([y, y ** 3], 1)
    want = (stats.spearmanr(mean, y).statistic + stats.spearmanr(-mean, y.numpy() ** 3).statistic) / 2
    assert spearman(m2, y2) == pytest.approx(want, rel=1e-12)
    # NLL sums over outputs (joint density of independent outputs) and averages over examples
    v2 = torch.stack([var, 2 * var], 1)
    assert gaussian_nll(m2, v2, y2) == pytest.approx(
        gaussian_nll(mean, var, y) + gaussian_nll(-mean, 2 * var, y**3), rel=1e-12
    )


def test_nll_matches_scipy(preds):
    mean, var, y = preds
    want = -stats.norm.logpdf(y.numpy(), mean.numpy(), np.sqrt(var.numpy())).mean()
    assert gaussian_nll(mean, var, y) == pytest.approx(want, rel=1e-12)


@settings(max_examples=25, deadline=None)
@given(mu=st.floats(-5, 5), sigma=st.floats(0.05, 5), y=st.floats(-10, 10))
def test_crps_equals_the_integral_of_the_squared_cdf_gap(mu, sigma, y):
    """CRPS(F, y) = ∫_{-∞}^{y} F(x)² dx + ∫_{y}^{∞} (1 − F(x))² dx, by quadrature."""
    left, _ = integrate.quad(lambda x: stats.norm.cdf(x, mu, sigma) ** 2, -np.inf, y, epsabs=1e-12, limit=200)
    right, _ = integrate.quad(lambda x: stats.norm.sf(x, mu, sigma) ** 2, y, np.inf, epsabs=1e-12, limit=200)
    got = crps_gaussian(torch.tensor([mu]), torch.tensor([sigma**2], dtype=torch.float64), torch.tensor([y]))
    assert got == pytest.approx(left + right, rel=1e-6, abs=1e-9)


def test_crps_of_a_perfect_mean_is_sigma_times_a_constant():
    """At z = 0: CRPS = σ(2φ(0) − 1/√π) = σ(√2 − 1)/√π."""
    sigma = torch.tensor([0.5, 2.0], dtype=torch.float64)
    got = crps_gaussian(torch.zeros(2), sigma**2, torch.zeros(2))
    assert got == pytest.approx(float(sigma.mean()) * (math.sqrt(2) - 1) / math.sqrt(math.pi), rel=1e-12)


def test_interval_coverage_and_width_equal_their_closed_forms(preds):
    mean, var, y = preds
    for level in (0.5, 0.9, 0.95):
        low, high = stats.norm.interval(level, mean.numpy(), np.sqrt(var.numpy()))
        t = y.numpy()
        coverage, width = interval_coverage(mean, var, y, level)
        assert coverage == pytest.approx(np.mean((t >= low) & (t <= high)), abs=1e-12)
        assert width == pytest.approx(np.mean(high - low), rel=1e-12)
    # just inside the edge is covered, just outside is not
    half = float(stats.norm.ppf(0.95))
    edge = torch.tensor([half - 1e-9, -half - 1e-9], dtype=torch.float64)
    cov, _ = interval_coverage(torch.zeros(2), torch.ones(2), edge, 0.9)
    assert cov == 0.5


def test_calibration_curve_of_a_miscalibrated_predictive_has_its_closed_form():
    """y ~ N(0, 1) (exact quantiles), predictive N(0, c): P(F(y) ≤ p) = Φ(√c·Φ⁻¹(p))."""
    n = 200_000
    y = torch.special.ndtri((torch.arange(n, dtype=torch.float64) + 0.5) / n)
    levels = [0.05, 0.25, 0.5, 0.75, 0.95]
    for c in (0.25, 1.0, 4.0):
        expected, observed = calibration_curve(torch.zeros(n), torch.full((n,), c, dtype=torch.float64), y, levels)
        want = stats.norm.cdf(math.sqrt(c) * stats.norm.ppf(levels))
        np.testing.assert_allclose(observed.numpy(), want, atol=2e-5)
        assert expected.tolist() == levels
    calibrated = regression_calibration_error(torch.zeros(n), torch.ones(n, dtype=torch.float64), y)
    assert calibrated < 1e-4
    p = np.arange(1, 100) / 100
    want_l1 = np.mean(np.abs(p - stats.norm.cdf(2 * stats.norm.ppf(p))))
    want_l2 = np.mean((p - stats.norm.cdf(2 * stats.norm.ppf(p))) ** 2)
    var4 = torch.full((n,), 4.0, dtype=torch.float64)
    assert regression_calibration_error(torch.zeros(n), var4, y) == pytest.approx(want_l1, abs=1e-4)
    assert regression_calibration_error(torch.zeros(n), var4, y, norm="l2") == pytest.approx(want_l2, abs=1e-5)


def test_variance_ood_reuses_the_ood_helpers():
    id_var = torch.tensor([0.1, 0.2, 0.3, 0.5])
    ood_var = torch.tensor([0.4, 0.6, 0.7])
    got = variance_ood_metrics(id_var, ood_var)
    assert got["auroc_variance"] == pytest.approx(11 / 12)  # one (ID 0.5, OOD 0.4) pair mis-ordered
    assert got["aupr_variance"] == ood.aupr(id_var, ood_var)
    two = variance_ood_metrics(torch.stack([id_var, id_var], 1), torch.stack([ood_var, ood_var], 1))
    assert two == got  # the summed variance ranks the same


def test_regression_metrics_keys_and_input_errors(preds):
    mean, var, y = preds
    out = regression_metrics(mean, var, y)
    assert set(out) == {
        "rmse", "mae", "pearson", "spearman", "nll", "crps", "calibration_error", "calibration_error_l2",
        "coverage_50", "width_50", "coverage_90", "width_90", "coverage_95", "width_95",
    }
    assert all(isinstance(v, float) and math.isfinite(v) for v in out.values())
    with pytest.raises(ValueError, match="var must be > 0.*row 3"):
        gaussian_nll(mean[:5], torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0]), y[:5])
    with pytest.raises(ValueError, match="one shape"):
        rmse(mean, y[:10])
    with pytest.raises(TypeError, match="floating point"):
        rmse(mean.long(), y)
    with pytest.raises(ValueError, match="NaN or inf.*row 1"):
        mae(torch.tensor([0.0, float("nan")]), torch.zeros(2))
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        interval_coverage(mean, var, y, 1.0)
