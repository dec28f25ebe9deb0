"""bayeshead.bench.regression_plots: PNGs are written, readable and show what they claim."""

from __future__ import annotations

import matplotlib  # noqa: F401  (the plot extra; a missing install must fail, not skip)
import pytest
import torch

from bayeshead.bench.regression_plots import calibration_curve_plot, predicted_vs_true_plot
from bayeshead.metrics.regression import calibration_curve

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _data(n=600):
    g = torch.Generator().manual_seed(0)
    y = 5 * torch.rand(n, generator=g, dtype=torch.float64)
    mean = y + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    return mean, y


def _image(path):
    from matplotlib.image import imread

    assert path.read_bytes().startswith(PNG_MAGIC)
    return imread(path)


def test_calibration_curves_of_several_methods(tmp_path):
    mean, y = _data()
    curves = {
        f"var x{c:g}": calibration_curve(mean, torch.full_like(mean, 0.25 * c), y) for c in (0.25, 1.0, 4.0)
    }
    out = calibration_curve_plot(curves, tmp_path / "cal" / "curve.png")
    image = _image(out)
    assert image.shape[0] >= 400 and image.shape[1] >= 400
    assert image[..., :3].std() > 0.05  # not blank
    with pytest.raises(ValueError, match="empty"):
        calibration_curve_plot({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="one length"):
        calibration_curve_plot({"bad": (torch.rand(3), torch.rand(4))}, tmp_path / "x.png")


def test_predicted_vs_true_with_intervals(tmp_path):
    mean, y = _data()
    var = torch.full_like(mean, 0.25)
    out = predicted_vs_true_plot(mean.unsqueeze(1), var.unsqueeze(1), y.unsqueeze(1), tmp_path / "pvt.png", max_points=200)
    image = _image(out)
    red = (image[..., 0] > 0.7) & (image[..., 1] < 0.4) & (image[..., 2] < 0.4)
    assert red.sum() > 0  # some targets fall outside a 90% interval
    with pytest.raises(ValueError, match="output < k"):
        predicted_vs_true_plot(mean.unsqueeze(1), var.unsqueeze(1), y.unsqueeze(1), tmp_path / "x.png", output=1)
