"""bayeshead.bench.plots: the PNG files are written and readable, with sensible sizes."""

from __future__ import annotations

import sys

# matplotlib is the plot extra that tests/run.sh installs; the ImportError hint for users without it
# is tested separately below, so no skip here.
import matplotlib  # noqa: F401
import pytest
import torch

from bayeshead.bench.plots import comparison_figure, reliability_diagram
from bayeshead.metrics import ClassificationMetrics, reliability_bins

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _read_png(path):
    from matplotlib.image import imread

    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    return imread(path)


def _bins():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(2 * torch.randn(300, 4, generator=g, dtype=torch.float64), -1)
    targets = torch.randint(0, 4, (300,), generator=g)
    return reliability_bins(probs, targets)


def test_reliability_diagram_writes_a_png(tmp_path):
    bins = _bins()
    path = reliability_diagram(bins, tmp_path / "sub" / "reliability.png", title="MiniLM + VBLL")
    assert path == tmp_path / "sub" / "reliability.png"
    image = _read_png(path)
    height, width = image.shape[:2]
    assert (width, height) == (500, 600)  # figsize (5, 6) at 100 dpi
    assert image.std() > 0.05  # something was drawn, not a blank canvas


def test_reliability_diagram_from_the_accumulator_with_empty_bins(tmp_path):
    metrics = ClassificationMetrics()
    metrics.update(
        torch.tensor([[0.9, 0.1], [0.8, 0.2]], dtype=torch.float64), torch.tensor([0, 1])
    )
    bins = metrics.reliability_bins()
    assert sum(c > 0 for c in bins.counts) == 2  # 13 empty bins must be skipped, not drawn as NaN
    path = reliability_diagram(bins, str(tmp_path / "r.png"), "two examples")
    assert path.stat().st_size > 1000
    _read_png(path)


def test_comparison_figure_writes_a_png(tmp_path):
    rows = [
        {
            "method": "deterministic",
            "acc": 0.91,
            "acc_std": 0.01,
            "ece": 0.08,
            "ece_std": 0.01,
            "nll": 0.40,
        },
        {
            "method": "vbll",
            "acc_mean": 0.90,
            "acc_std": 0.02,
            "ece_mean": 0.03,
            "nll_mean": 0.30,
            "nll_std": 0.02,
        },
        {"method": "laplace", "acc": 0.91, "ece": float("nan"), "nll": 0.31, "nll_std": None},
        {"method": "mc_dropout", "acc": 0.89, "ece": 0.05, "nll": 0.35},
    ]
    path = comparison_figure(rows, tmp_path / "comparison.png")
    image = _read_png(path)
    height, width = image.shape[:2]
    assert 300 <= height <= 600 and 600 <= width <= 3000
    assert width > height  # three panels side by side


def test_comparison_figure_rejects_incomplete_rows(tmp_path):
    with pytest.raises(ValueError, match="no 'nll'"):
        comparison_figure([{"method": "a", "acc": 0.9, "ece": 0.1}], tmp_path / "c.png")
    with pytest.raises(ValueError, match="no 'method'"):
        comparison_figure([{"acc": 0.9, "ece": 0.1, "nll": 0.3}], tmp_path / "c.png")
    with pytest.raises(ValueError, match="at least one row"):
        comparison_figure([], tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


def test_missing_matplotlib_gives_an_install_hint(tmp_path, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import name` raise ImportError
    with pytest.raises(ImportError, match=r"pip install 'bayeshead\[plot\]'"):
        reliability_diagram(_bins(), tmp_path / "r.png")
    with pytest.raises(ImportError, match=r"pip install 'bayeshead\[plot\]'"):
        comparison_figure([{"method": "a", "acc": 1, "ece": 0, "nll": 0}], tmp_path / "c.png")
