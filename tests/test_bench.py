"""The benchmark engine: suites, bring-your-own data through the CLI, a small end-to-end run,
the report built from run JSONs."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest
from _helpers import SENTIMENT

from bayeshead.bench.report import aggregate, load_runs, markdown_table, pooled_bins
from bayeshead.bench.suite import QUICK, SuiteConfig, load_suite
from bayeshead.cli.main import main
from bayeshead.config import ConfigError


def _write_csv(path, rows, header=("text", "label")):
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_quick_suite_has_the_twelve_methods_and_valid_configs():
    from bayeshead.bench.runner import method_config

    names = [m.name for m in QUICK.methods]
    assert names == [
        "lora+mle", "lora+map", "lora+temperature", "lora+mc_dropout", "lora+la", "lora+vbll",
        "polar+vbll", "polar+vbll (landing)", "polar+vbll+la", "lora+ensemble", "lora+blob", "lora+tfb",
    ]
    configs = {m.name: method_config(QUICK, m, 0) for m in QUICK.methods}
    assert configs["polar+vbll"].optimizer.kind == "riemannian_adam"
    assert configs["polar+vbll (landing)"].optimizer.kind == "landing"
    assert configs["polar+vbll+la"].training.laplace_refine
    assert configs["lora+mc_dropout"].method.kind == "mc_dropout" and configs["lora+mc_dropout"].adapter.dropout > 0
    assert configs["lora+ensemble"].method.kind == "ensemble" and configs["lora+ensemble"].method.members == 3
    assert configs["lora+blob"].method.kind == "blob" and configs["lora+tfb"].method.kind == "tfb"
    assert configs["lora+mle"].method.kind == "single"
    assert all(c.training.mode == "alternating" for n, c in configs.items() if "vbll" in n)


def test_suite_selection_and_files(tmp_path):
    with pytest.raises(ConfigError, match="unknown method"):
        QUICK.select(["lora+nothing"])
    # runs go in the order given to --methods, not the suite's
    assert [m.name for m in QUICK.select(["polar+vbll", "lora+mle"]).methods] == ["polar+vbll", "lora+mle"]
    assert [m.name for m in QUICK.select(["lora+mle", "polar+vbll"]).methods] == ["lora+mle", "polar+vbll"]
    # ... while reports keep the suite's order, also after a second selection
    names = [m.name for m in QUICK.methods]
    picked = QUICK.select(["lora+tfb", "polar+vbll", "lora+mle"]).select(["lora+tfb", "lora+mle"])
    assert [picked.method_position(m.name) for m in picked.methods] == [names.index("lora+tfb"), 0]
    assert QUICK.method_position("polar+vbll") == names.index("polar+vbll")
    # ... and after the command line's --seeds / sizes rebuild the suite
    reseeded = QUICK.select(["polar+vbll+la", "polar+vbll"]).updated({"seeds": [1], "n_train": 10})
    assert reseeded.seeds == [1] and reseeded.n_train == 10
    assert [reseeded.method_position(m.name) for m in reseeded.methods] == [
        names.index("polar+vbll+la"), names.index("polar+vbll")]
    assert QUICK.updated({"seeds": [2]}).method_position("lora+tfb") == names.index("lora+tfb")
    with pytest.raises(ValueError, match="unique"):
        SuiteConfig(name="x", methods=[{"name": "a"}, {"name": "a"}])
    path = tmp_path / "s.yaml"
    path.write_text("name: mine\nmethods:\n  - {name: lora+mle, overrides: [adapter.kind=lora]}\nseeds: [3, 4]\n")
    assert load_suite(str(path)).seeds == [3, 4]
    with pytest.raises(ConfigError, match="unknown suite"):
        load_suite("nonexistent")


def test_suite_file_extends_another_and_replaces_whole_fields(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "name: base\nbase: [training.epochs=2]\nseeds: [0, 1]\nn_train: 50\n"
        "methods:\n  - {name: lora+mle, overrides: [adapter.kind=lora]}\n  - {name: polar+vbll, overrides: [adapter.kind=polar]}\n"
    )
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nname: child\nseeds: [5]\n")
    (tmp_path / "grandchild.yaml").write_text(
        "extends: child.yaml\nname: grandchild\nmethods:\n  - {name: lora+map, overrides: [adapter.kind=lora]}\n"
    )
    child, grandchild = load_suite(str(tmp_path / "child.yaml")), load_suite(str(tmp_path / "grandchild.yaml"))
    assert (child.name, child.seeds, child.n_train, child.base) == ("child", [5], 50, ["training.epochs=2"])
    assert [m.name for m in child.methods] == ["lora+mle", "polar+vbll"]
    assert grandchild.seeds == [5] and [m.name for m in grandchild.methods] == ["lora+map"]  # a list is replaced whole
    assert load_suite(str(_write(tmp_path / "q.yaml", "extends: quick\nname: q\nseeds: [7]\n"))).methods == QUICK.methods
    _write(tmp_path / "a.yaml", "extends: b.yaml\nname: a\n")
    _write(tmp_path / "b.yaml", "extends: a.yaml\nname: b\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_suite(str(tmp_path / "a.yaml"))
    with pytest.raises(ConfigError, match="extends 'missing.yaml'"):
        load_suite(str(_write(tmp_path / "m.yaml", "extends: missing.yaml\nname: m\n")))
    # the ARC-E supplement differs from the grid in exactly the fields it names
    grid, supplement = load_suite("commonsense-cpu").model_dump(), load_suite("commonsense-cpu-arc-easy-lm-score").model_dump()
    assert {k for k in grid if grid[k] != supplement[k]} == {"name", "description", "tasks", "ood_tasks", "formulation"}
    assert supplement["formulation"] == {"arc_easy": "options_lm_score"}


def _write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "case, content, message",
    [
        ("missing column", b"sentence,label\nhi,a\nyo,b\n", "no column 'text'"),
        ("empty file", b"", "empty"),
        ("single class", b"text,label\nhi,a\nyo,a\n", "at least two classes"),
        ("undecodable bytes", b"text,label\nhi,a\n\xff\xfe\xfa,b\n", "line 3: bytes"),
    ],
)
def test_bench_cli_reports_bad_data_with_file_and_row(tmp_path, capsys, case, content, message):
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    assert main(["bench", "--data", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "data.csv" in err and message in err, err
    assert "Traceback" not in err


def test_bench_cli_reports_non_text_values(tmp_path, capsys):
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "fine", "label": "a"}\n{"text": 3, "label": "b"}\n', encoding="utf-8")
    assert main(["bench", "--data", str(path)]) == 2
    err = capsys.readouterr().err
    assert "data.jsonl: row 2" in err and "not text" in err


def test_bench_cli_rejects_split_files_without_data(capsys):
    assert main(["bench", "--val", "v.csv"]) == 2
    assert "--data" in capsys.readouterr().err


def test_bring_your_own_data_end_to_end(tmp_path, capsys):
    texts, labels = SENTIMENT
    rows = [(t, "pos" if y else "neg") for t, y in zip(texts * 2, labels * 2, strict=True)]
    train = _write_csv(tmp_path / "train.csv", rows, header=("review", "sentiment"))
    ood = _write_csv(tmp_path / "ood.csv", [("What is the boiling point of water?", "x"), ("Name a prime.", "y")], header=("review", "other"))
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: tiny\nbase: [backbone.max_length=16, adapter.rank=2, 'adapter.target_modules=[query]', training.epochs=1,"
        " training.batch_size=8, training.progress=false]\nmethods:\n"
        "  - {name: lora+mle, overrides: [adapter.kind=lora, head.kind=deterministic]}\n"
        "  - {name: polar+vbll, overrides: [adapter.kind=polar, optimizer.kind=riemannian_adam, head.kind=vbll_classification]}\n"
        "seeds: [0, 1]\n"
    )
    out = tmp_path / "out"
    code = main([
        "bench", "--suite", str(suite), "--data", str(train), "--text-field", "review", "--label-field", "sentiment",
        "--ood", str(ood), "--out", str(out),
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| lora+mle |" in printed and "| polar+vbll |" in printed
    runs = sorted((out / "runs").glob("*.json"))
    assert len(runs) == 4
    record = json.loads(runs[0].read_text())
    for key in ("config", "versions", "wall_seconds", "peak_memory_mb", "trainable_parameters", "metrics", "train_seconds"):
        assert key in record
    assert record["data"]["n_test"] == 5 and record["data"]["n_val"] == 2 and record["data"]["n_ood"] == 2
    assert 0.0 <= record["metrics"]["ood_auroc_maxprob"] <= 1.0
    assert (out / "results.md").read_text().startswith("| method |")
    pngs = sorted(p.name for p in (out / "reliability").glob("*.png"))
    assert pngs == ["lora+mle.png", "polar+vbll.png"]
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # --resume keeps finished runs; the report command rebuilds the tables from the JSONs
    assert main(["bench", "--suite", str(suite), "--data", str(train), "--text-field", "review",
                 "--label-field", "sentiment", "--out", str(out), "--resume", "--no-figures"]) == 0
    assert "kept" in capsys.readouterr().out
    # ... but not a run the suite now resolves to other settings: that one runs again
    suite.write_text(suite.read_text().replace("head.kind=deterministic]", "head.kind=deterministic, head.weight_decay=0.5]"))
    assert main(["bench", "--suite", str(suite), "--data", str(train), "--text-field", "review",
                 "--label-field", "sentiment", "--out", str(out), "--resume", "--no-figures"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("head.weight_decay: 0.0 -> 0.5); running it again") == 2
    assert printed.count(": kept ") == 2  # polar+vbll, both seeds
    assert json.loads((out / "runs" / "lora+mle--seed1.json").read_text())["config"]["head"]["weight_decay"] == 0.5
    assert main(["report", str(out / "runs"), "--out", str(tmp_path / "report"), "--no-figures"]) == 0
    assert (tmp_path / "report" / "results.csv").is_file()
    assert "Paired differences vs lora+mle" in (tmp_path / "report" / "results.md").read_text()
    # --baseline names the method the paired differences are taken against
    assert main(["report", str(out / "runs"), "--out", str(tmp_path / "report"), "--no-figures",
                 "--baseline", "polar+vbll"]) == 0
    paired = (tmp_path / "report" / "results.md").read_text()
    assert "Paired differences vs polar+vbll" in paired and "Paired differences vs lora+mle" not in paired
    assert "| lora+mle |" in paired.split("Paired differences vs polar+vbll")[1]
    assert main(["report", str(out / "runs"), "--out", str(tmp_path / "report"), "--baseline", "blob"]) == 2
    assert "baseline 'blob' is not a method of these runs" in capsys.readouterr().err


def _record(method, seed, acc, nll, counts, conf, correct):
    return {
        "method": method, "seed": seed, "train_seconds": 1.0 + seed, "predict_seconds": 0.5,
        "metrics": {
            "acc": acc, "nll": nll, "ece": 0.1, "brier": 0.5,
            "reliability": {"edges": [0.0, 0.5, 1.0], "counts": counts, "mean_confidence": conf, "accuracy": correct},
        },
    }


def test_report_aggregates_mean_and_std_over_seeds(tmp_path):
    nan = float("nan")
    runs = [
        _record("a", 0, 0.5, 1.0, [0, 2], [nan, 0.75], [nan, 0.5]),
        _record("a", 1, 0.7, 0.8, [1, 1], [0.4, 0.9], [0.0, 1.0]),
        _record("b", 0, 0.6, 0.9, [0, 2], [nan, 0.8], [nan, 1.0]),
    ]
    for i, run in enumerate(runs):
        (tmp_path / f"r{i}.json").write_text(json.dumps(run))
    loaded = load_runs(tmp_path)
    rows = aggregate(loaded)
    assert [r["method"] for r in rows] == ["a", "b"]
    assert rows[0]["acc_mean"] == pytest.approx(0.6)
    assert rows[0]["acc_std"] == pytest.approx(statistics.stdev([0.5, 0.7]))
    assert rows[1]["acc_std"] == 0.0
    table = markdown_table(rows)
    assert "0.600 ± 0.141" in table
    assert "OOD AUROC" not in table  # a column no record has is left out
    bins = pooled_bins([r for r in loaded if r["method"] == "a"])
    assert bins.counts == (1, 3)
    assert bins.mean_confidence[1] == pytest.approx((2 * 0.75 + 0.9) / 3)
    assert bins.accuracy[1] == pytest.approx((2 * 0.5 + 1.0) / 3)
    with pytest.raises(ValueError, match="no run records"):
        load_runs(tmp_path / "empty")


def test_changed_settings_names_what_differs_and_ignores_settings_a_record_predates():
    from bayeshead.bench.runner import changed_settings
    from bayeshead.config import load_config

    config = load_config(None, ["head.kind=deterministic", "optimizer.lr=1e-3"])
    recorded = config.model_dump(mode="json")
    assert changed_settings(recorded, config) == []
    del recorded["training"]["grad_clip"]  # written before the setting existed: not compared
    recorded["training"]["progress"] = not recorded["training"]["progress"]  # display only
    assert changed_settings(recorded, config) == []
    recorded["optimizer"]["lr"] = 2e-3
    recorded["backbone"]["gone"] = 1
    assert changed_settings(recorded, config) == ["backbone.gone: 1 -> (no such setting)", "optimizer.lr: 0.002 -> 0.001"]
    for i in range(6):
        recorded["head"][f"x{i}"] = i
    assert changed_settings(recorded, config)[-1] == "4 more" and len(changed_settings(recorded, config)) == 5


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_suite_file_resolves_every_run_to_a_valid_config(path):
    from bayeshead.bench.runner import method_config
    from bayeshead.bench.suite import load_suite

    suite = load_suite(str(path))
    for task in suite.tasks or [None]:
        for method in suite.methods:
            config = method_config(suite, method, suite.seeds[0], (), task)
            assert config.training.seed == suite.seeds[0]
