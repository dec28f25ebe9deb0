"""The "paired differences vs <baseline>" section of bench reports, from hand-made run JSONs:
written only when every run has ``per_example``, baseline = the first method unless named,
numbers equal to paired_bootstrap on the same records, and the comparison figure drawn."""

from __future__ import annotations

import json

import pytest
import torch

from bayeshead.bench.report import load_runs, paired_differences, write_report
from bayeshead.metrics import auroc, paired_differences_from_records, reliability_bins


def _record(method, seed, skill, position, *, per_example=True, task=None):
    g = torch.Generator().manual_seed(1000 * position + seed)
    n, m = 200, 60
    conf = 0.4 + 0.6 * torch.rand(n, generator=g, dtype=torch.float64)
    correct = (torch.rand(n, generator=g, dtype=torch.float64) < conf * skill).double()
    nll = -torch.log(torch.where(correct > 0, conf, (1 - conf) / 2))
    ood = 0.4 + 0.5 * torch.rand(m, generator=g, dtype=torch.float64)
    rest = (1 - conf) / 2
    bins = reliability_bins(torch.stack([conf, rest, rest], 1), torch.where(correct > 0, 0, 1))
    record = {
        "method": method,
        "seed": seed,
        "suite_position": {"task": 0, "method": position},
        "metrics": {
            "acc": float(correct.mean()),
            "ece": bins.ece,
            "nll": float(nll.mean()),
            "ood_auroc_maxprob": auroc(1 - conf, 1 - ood),
            "reliability": {
                "edges": list(bins.edges),
                "counts": list(bins.counts),
                "mean_confidence": list(bins.mean_confidence),
                "accuracy": list(bins.accuracy),
            },
        },
    }
    if task is not None:
        record["task"] = task
    if per_example:
        record["per_example"] = {
            "test": {"confidence": conf.tolist(), "correct": correct.tolist(), "nll": nll.tolist()},
            "ood": {"confidence": ood.tolist()},
        }
    return record


def _write(tmp_path, records):
    folder = tmp_path / "runs"
    folder.mkdir()
    for i, record in enumerate(records):
        (folder / f"run{i}.json").write_text(json.dumps(record))
    return load_runs(folder)


def _suite(**kwargs):
    return [
        _record(method, seed, skill, position, **kwargs)
        for position, (method, skill) in enumerate([("mle", 0.9), ("vbll", 1.0), ("la", 0.7)])
        for seed in (0, 1)
    ]


def test_section_against_the_first_method_with_the_bootstrap_numbers(tmp_path):
    runs = _write(tmp_path, _suite())
    written = write_report(runs, tmp_path / "out", n_boot=300)
    text = written["markdown"].read_text(encoding="utf-8")
    assert "## Paired differences vs mle" in text
    section = text.split("## Paired differences vs mle")[1]
    assert "| vbll | 0 1 |" in section and "| la | 0 1 |" in section
    assert "| mle |" not in section  # the baseline has no row of its own
    expected = paired_differences_from_records(
        [r for r in runs if r["method"] == "la"], [r for r in runs if r["method"] == "mle"],
        n_boot=300,
    )
    acc = expected["acc"]
    cell = f"{acc.estimate:+.3f} [{acc.low:+.3f}, {acc.high:+.3f}]".replace("-", "−")
    assert cell in section
    assert acc.excludes_zero() and cell + "*" in section  # skill 0.7 vs 0.9: clearly worse
    assert "Δ OOD AUROC" in section
    assert written["comparison"].stat().st_size > 5000


def test_named_baseline_and_option_passing(tmp_path):
    runs = _write(tmp_path, _suite())
    base, diffs = paired_differences(runs, "vbll", n_boot=50)
    assert base == "vbll" and set(diffs) == {"mle", "la"}
    assert all(d.n_boot == 50 for ds in diffs.values() for d in ds.values())
    text = write_report(runs, tmp_path / "out", figures=False, baseline="vbll", n_boot=50)[
        "markdown"
    ].read_text(encoding="utf-8")
    assert "## Paired differences vs vbll" in text
    with pytest.raises(ValueError, match="not a method"):
        write_report(runs, tmp_path / "out2", figures=False, baseline="nope")


def test_old_run_jsons_get_no_section_and_no_error(tmp_path):
    records = _suite(per_example=False)
    records[0] = _record("mle", 0, 0.9, 0)  # one run with per_example is not enough
    runs = _write(tmp_path, records)
    written = write_report(runs, tmp_path / "out", n_boot=50)
    text = written["markdown"].read_text(encoding="utf-8")
    assert "Paired differences" not in text and "| vbll |" in text
    assert paired_differences(runs) is None
    assert written["comparison"].is_file()


def test_one_section_per_task(tmp_path):
    records = [
        _record(method, seed, skill, position, task=task)
        for task in ("obqa", "arc")
        for position, (method, skill) in enumerate([("mle", 0.9), ("vbll", 1.0)])
        for seed in (0,)
    ]
    runs = _write(tmp_path, records)
    text = write_report(runs, tmp_path / "out", figures=False, n_boot=50)["markdown"].read_text(
        encoding="utf-8"
    )
    assert "## Paired differences vs mle (obqa)" in text
    assert "## Paired differences vs mle (arc)" in text


def _with_named_ood_sets(record, shift):
    """A QA-style record: the OOD block split into two named sets; ``shift`` lowers the
    confidence on the second set (a method that detects it better)."""
    ood = record["per_example"].pop("ood")["confidence"]
    half = len(ood) // 2
    record["per_example"]["arc_easy"] = {"confidence": ood[:half]}
    record["per_example"]["mmlu"] = {"confidence": [max(0.0, c - shift) for c in ood[half:]]}
    return record


def test_per_set_ood_section_matches_the_bootstrap_on_each_set(tmp_path):
    from bayeshead.bench.report import paired_ood_sets

    records = [_with_named_ood_sets(r, 0.3 if r["method"] == "vbll" else 0.0) for r in _suite(task="obqa")]
    runs = _write(tmp_path, records)
    base, diffs = paired_ood_sets(runs, n_boot=300)
    assert base == "mle" and set(diffs) == {"vbll", "la"} and set(diffs["vbll"]) == {"arc_easy", "mmlu"}
    # equal to the two-set bootstrap run by hand on the "mmlu" set
    def as_single(run, name):
        return {**run, "per_example": {"test": run["per_example"]["test"], "ood": run["per_example"][name]}}
    by_hand = paired_differences_from_records(
        [as_single(r, "mmlu") for r in runs if r["method"] == "vbll"],
        [as_single(r, "mmlu") for r in runs if r["method"] == "mle"], n_boot=300,
    )["ood_auroc_maxprob"]
    got = diffs["vbll"]["mmlu"]
    assert (got.estimate, got.low, got.high) == pytest.approx((by_hand.estimate, by_hand.low, by_hand.high))
    assert got.estimate > 0.1 and got.excludes_zero()  # lowered OOD confidence: detected better
    write_report(runs, tmp_path / "out", n_boot=300, figures=False)
    body = (tmp_path / "out" / "results.md").read_text()
    assert "## Paired OOD AUROC per OOD set vs mle (obqa)" in body and "| method | seeds | arc_easy | mmlu |" in body
    # tweets-style runs (one unnamed OOD block) get no per-set section
    (tmp_path / "plain").mkdir()
    assert paired_ood_sets(_write(tmp_path / "plain", _suite()), n_boot=50) is None
