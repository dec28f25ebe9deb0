"""bayeshead.bench.plots: the PNG files are written and readable, with sensible sizes; the
reliability diagram draws accuracy and gap apart and shows the bin counts; the comparison figure
shows paired intervals."""

from __future__ import annotations

import sys

# matplotlib is the plot extra that tests/run.sh installs; the ImportError hint for users without it
# is tested separately below, so no skip here.
import matplotlib  # noqa: F401
import pytest
import torch

from bayeshead.bench.plots import _reliability_figure, comparison_figure, reliability_diagram
from bayeshead.metrics import ClassificationMetrics, PairedDifference, reliability_bins

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


def _patches(axis, label):
    containers = [c for c in axis.containers if c.get_label() == label]
    return [patch for c in containers for patch in c.patches]


def test_reliability_accuracy_and_gap_are_drawn_apart_with_counts():
    from matplotlib.figure import Figure

    g = torch.Generator().manual_seed(1)
    logits = 3 * torch.randn(500, 3, generator=g, dtype=torch.float64)
    targets = torch.distributions.Categorical(logits=0.5 * logits).sample()
    bins = reliability_bins(torch.softmax(logits, -1), targets)
    figure = _reliability_figure(Figure, bins, "over-confident")
    top, bottom = figure.axes
    filled = [i for i, c in enumerate(bins.counts) if c > 0]
    bars = _patches(top, "accuracy")
    gaps = _patches(top, "gap: over-confident") + _patches(top, "gap: under-confident")
    assert [bar.get_height() for bar in bars] == pytest.approx([bins.accuracy[i] for i in filled])
    assert gaps and len(gaps) <= len(filled)
    for gap in gaps:
        b = min(range(len(filled)), key=lambda j: abs(bars[j].get_x() + bars[j].get_width() - gap.get_x()))
        i = filled[b]
        # the gap box sits right of its accuracy bar (no overlap) and spans accuracy..confidence
        assert gap.get_x() >= bars[b].get_x() + bars[b].get_width() - 1e-12
        low, high = sorted((bins.accuracy[i], bins.mean_confidence[i]))
        assert (gap.get_y(), gap.get_y() + gap.get_height()) == pytest.approx((low, high))
        assert not gap.get_fill() and gap.get_hatch()
    assert sum(bins.mean_confidence[i] > bins.accuracy[i] for i in filled) > len(filled) / 2
    assert len(_patches(top, "gap: over-confident")) > len(_patches(top, "gap: under-confident"))
    texts = sorted(int(t.get_text()) for t in bottom.texts)
    assert texts == sorted(c for c in bins.counts if c > 0)
    assert f"ECE = {bins.ece:.4f}" in top.get_title()


def test_comparison_figure_shows_paired_intervals(tmp_path):
    rows = [
        {"method": "base", "acc": 0.9, "ece": 0.05, "nll": 0.3},
        {"method": "new", "acc": 0.91, "ece": 0.03, "nll": 0.28},
        {"method": "other", "acc": 0.88, "ece": 0.06, "nll": 0.35},
    ]

    def diff(metric, estimate, low, high):
        return PairedDifference(metric, estimate, low, high, 0.01, 0.95, 100, (0, 1))

    differences = {
        "new": {"acc": diff("acc", 0.01, -0.005, 0.025), "ece": diff("ece", -0.02, -0.03, -0.01)},
        "other": {"acc": diff("acc", -0.02, -0.04, -0.001), "nll": diff("nll", 0.05, 0.02, 0.08)},
    }
    path = comparison_figure(
        rows, tmp_path / "c.png", differences=differences, baseline="base", title="t"
    )
    image = _read_png(path)
    assert image.shape[0] == 800  # two rows of panels, 4 inches each at 100 dpi
    plain = _read_png(comparison_figure(rows, tmp_path / "p.png"))
    assert plain.shape[0] == 400
