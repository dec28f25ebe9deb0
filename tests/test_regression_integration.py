"""Text regression and sentence pairs end to end: predictives, data fingerprints, target
standardisation, pairs through model / trainer / methods, evaluation and the bench report."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from _helpers import tiny_model
from hypothesis import given, settings
from hypothesis import strategies as st

from bayeshead.data import TextDataset
from bayeshead.errors import BayesheadError
from bayeshead.evaluation import evaluate, per_example, predict_dataset
from bayeshead.methods.base import mixture
from bayeshead.training.trainer import Trainer, data_fingerprint
from bayeshead.types import CategoricalPredictive, GaussianPredictive

FIRST = ["a man plays a guitar", "a dog runs", "stocks fell sharply", "the cat sleeps", "two kids swim", "rain in paris"]
SECOND = ["a person plays music", "a cat sleeps", "markets dropped", "a cat is asleep", "children in a pool", "sun in rome"]
SCORES = [4.2, 0.8, 3.9, 4.8, 3.1, 0.4]
_FAST = ["training.max_steps=3", "training.batch_size=4", "optimizer.lr=0.01", "adapter.kind=lora", "adapter.rank=2",
         "adapter.target_modules=[q_proj, v_proj]"]


def _pairs(scale: float = 1.0, shift: float = 0.0) -> TextDataset:
    return TextDataset(FIRST, torch.tensor(SCORES) * scale + shift, target_type="regression", text_pair=SECOND)


# -- GaussianPredictive: moment-matched mixtures and the epistemic part ---------------------------------


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(1, 4), st.integers(1, 3), st.integers(0, 10_000))
def test_from_samples_is_the_moment_matched_mixture(s, b, k, seed):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(s, b, k, generator=g, dtype=torch.float64) * 3
    variances = torch.rand(s, b, k, generator=g, dtype=torch.float64) + 0.1
    pred = GaussianPredictive.from_samples(means, variances)
    mean = means.mean(0)
    torch.testing.assert_close(pred.mean, mean)
    torch.testing.assert_close(pred.var, (variances + means**2).mean(0) - mean**2)  # the textbook form
    torch.testing.assert_close(pred.epistemic_var, means.var(0, unbiased=False))
    torch.testing.assert_close(pred.aleatoric_var, variances.mean(0))
    # a mixture's variance is at least its members' average variance
    assert (pred.var >= variances.mean(0) - 1e-12).all()


def test_mutual_information_of_the_linear_gaussian_model():
    pred = GaussianPredictive(
        mean=torch.zeros(2, 2, dtype=torch.float64),
        var=torch.tensor([[2.0, 1.0], [5.0, 3.0]], dtype=torch.float64),
        epistemic_var=torch.tensor([[1.0, 0.0], [4.0, 2.0]], dtype=torch.float64),
    )
    expected = torch.tensor([0.5 * torch.log(torch.tensor(2.0)), 0.5 * (torch.log(torch.tensor(5.0)) + torch.log(torch.tensor(3.0)))])
    torch.testing.assert_close(pred.mutual_information(), expected.double())
    assert (GaussianPredictive(mean=pred.mean, var=pred.var).mutual_information() == 0).all()


def test_gaussian_predictive_keeps_the_epistemic_part_through_cat_double_and_scaling():
    from bayeshead.data.scaling import TargetScaler

    a = GaussianPredictive(torch.zeros(2, 1), torch.ones(2, 1), torch.full((2, 1), 0.25))
    b = GaussianPredictive(torch.ones(1, 1), torch.ones(1, 1), torch.full((1, 1), 0.5))
    both = GaussianPredictive.cat([a, b]).double()
    assert both.epistemic_var.dtype == torch.float64 and both.epistemic_var.flatten().tolist() == [0.25, 0.25, 0.5]
    assert GaussianPredictive.cat([a, GaussianPredictive(torch.ones(1, 1), torch.ones(1, 1))]).epistemic_var is None
    scaled = TargetScaler(mean=torch.tensor([10.0]), std=torch.tensor([2.0])).inverse_predictive(both)
    torch.testing.assert_close(scaled.epistemic_var, 4 * both.epistemic_var)
    with pytest.raises(ValueError, match="epistemic_var"):
        GaussianPredictive(torch.zeros(2, 1), torch.ones(2, 1), torch.zeros(3, 1))


def test_mixture_of_categoricals_is_unchanged_and_mixed_kinds_are_refused():
    logits = torch.randn(3, 4, 5)
    parts = [CategoricalPredictive.from_logits(z) for z in logits]
    ref = CategoricalPredictive.from_sample_log_probs(torch.stack([p.log_probs for p in parts]))
    torch.testing.assert_close(mixture(parts).probs, ref.probs, rtol=0, atol=0)
    with pytest.raises(TypeError, match="must all be categorical or all Gaussian"):
        mixture([parts[0], GaussianPredictive(torch.zeros(4, 1), torch.ones(4, 1))])


# -- data fingerprint -------------------------------------------------------------------------------------


def test_fingerprint_of_single_text_classification_data_is_unchanged():
    data = TextDataset(FIRST, [0, 1, 0, 1, 1, 0])
    digest = hashlib.sha256()
    for text in FIRST:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    digest.update(data.labels.to(torch.int64).numpy().tobytes())
    assert data_fingerprint(data) == digest.hexdigest()  # checkpoints written before pairs existed still resume


def test_fingerprint_sees_pairs_and_exact_float_targets():
    base = _pairs()
    assert data_fingerprint(base) == data_fingerprint(_pairs())
    nudged = torch.tensor(SCORES)
    nudged[2] = torch.nextafter(nudged[2], torch.tensor(10.0))  # one ulp
    assert data_fingerprint(TextDataset(FIRST, nudged, target_type="regression", text_pair=SECOND)) != data_fingerprint(base)
    other_pair = TextDataset(FIRST, torch.tensor(SCORES), target_type="regression", text_pair=[*SECOND[:-1], "x"])
    assert data_fingerprint(other_pair) != data_fingerprint(base)
    unpaired = TextDataset(FIRST, torch.tensor(SCORES), target_type="regression")
    assert data_fingerprint(unpaired) != data_fingerprint(base)
    # regression targets are not truncated to integers (0.8 and 0.4 would both hash as 0)
    floored = TextDataset(FIRST, torch.tensor(SCORES).floor(), target_type="regression", text_pair=SECOND)
    assert data_fingerprint(floored) != data_fingerprint(base)


# -- model and trainer: pairs, task type checks, standardisation --------------------------------------------


def test_model_features_of_pairs_are_the_backbone_pair_features(offline_tokenizer):
    model = tiny_model(offline_tokenizer, ["head.kind=gaussian"], num_outputs=1)
    model.eval()
    with torch.no_grad():
        direct = model.backbone.features(model.backbone.tokenize(FIRST, SECOND))
        torch.testing.assert_close(model.features(FIRST, SECOND), direct, rtol=0, atol=0)
        assert not torch.allclose(model.features(FIRST), direct)
    with pytest.raises(TypeError, match="text_pair"):
        model.features(model.backbone.tokenize(FIRST), SECOND)


@pytest.mark.parametrize(
    ("head", "data", "message"),
    [
        ("deterministic", "regression", "regression targets but head.kind='deterministic'"),
        ("gaussian", "classification", "classification targets but head.kind='gaussian'"),
    ],
)
def test_trainer_refuses_a_head_of_the_other_task_type(offline_tokenizer, head, data, message):
    model = tiny_model(offline_tokenizer, [*_FAST, f"head.kind={head}"], num_outputs=1 if head == "gaussian" else 2)
    dataset = _pairs() if data == "regression" else TextDataset(FIRST, [0, 1, 0, 1, 1, 0], text_pair=SECOND)
    with pytest.raises(ValueError, match=message):
        Trainer(model).fit(dataset)


def test_fit_standardises_targets_and_predicts_in_original_units_after_reload(offline_tokenizer, tmp_path):
    from bayeshead.methods import load_method

    train = _pairs(scale=100.0, shift=1000.0)  # scores 1040 .. 1480
    model = tiny_model(offline_tokenizer, [*_FAST, "head.kind=gaussian"], num_outputs=1)
    model.fit(train, train)
    scaler = model.target_scaler
    y = train.labels.double()
    torch.testing.assert_close(scaler.mean, y.mean().reshape(1))
    torch.testing.assert_close(scaler.std, y.std(unbiased=False).reshape(1))
    pred = model.predict(FIRST, text_pair=SECOND)
    raw = model.head.predict(model.features(FIRST, SECOND))
    torch.testing.assert_close(pred.mean, scaler.mean.float() + scaler.std.float() * raw.mean)
    torch.testing.assert_close(pred.var, scaler.std.float() ** 2 * raw.var)
    assert 900 < float(pred.mean.mean()) < 1600  # the original units, not z-scores
    model.save_pretrained(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "metadata.json").read_text())
    assert meta["target_scaler"]["mean"] == scaler.mean.tolist()
    from test_contract import _backbone

    again = load_method(tmp_path / "m", backbone=_backbone(offline_tokenizer)).model
    torch.testing.assert_close(again.target_scaler.std, scaler.std, rtol=0, atol=0)
    torch.testing.assert_close(again.predict(FIRST, text_pair=SECOND).mean, pred.mean, rtol=0, atol=0)


def test_standardisation_can_be_switched_off(offline_tokenizer):
    model = tiny_model(offline_tokenizer, [*_FAST, "head.kind=gaussian", "training.standardize_targets=false"], num_outputs=1)
    model.fit(_pairs())
    assert model.target_scaler is None


def test_validation_nll_of_pairs_is_in_target_units(offline_tokenizer):
    from bayeshead.training.evaluate import evaluate_nll

    model = tiny_model(offline_tokenizer, [*_FAST, "head.kind=gaussian"], num_outputs=1)
    data = _pairs(scale=10.0)
    model.fit(data)
    expected = float(model.predict(FIRST, text_pair=SECOND).nll(data.labels).mean())
    assert evaluate_nll(model, data) == pytest.approx(expected, rel=1e-5)


# -- methods with a regression head -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mc_dropout", "ensemble", "blob"])
def test_sampling_methods_give_a_moment_matched_gaussian_with_an_epistemic_part(offline_tokenizer, kind):
    from test_contract import _backbone

    from bayeshead.config import load_config
    from bayeshead.methods import build_method

    extra = {"mc_dropout": ["adapter.dropout=0.2", "method.n_samples=4"], "ensemble": ["method.members=2"], "blob": ["method.n_samples=4"]}
    config = load_config(overrides=["training.progress=false", *_FAST, "head.kind=gaussian", f"method.kind={kind}", *extra[kind]])
    torch.manual_seed(0)
    method = build_method(config, num_outputs=1, backbone=_backbone(offline_tokenizer))
    method.fit(_pairs(scale=10.0))
    pred = method.predict(FIRST, text_pair=SECOND, generator=torch.Generator().manual_seed(1))
    assert isinstance(pred, GaussianPredictive) and pred.mean.shape == (len(FIRST), 1)
    assert (pred.epistemic_var > 0).all() and (pred.var > pred.epistemic_var).all()
    if kind == "ensemble":  # the mixture of the members, mapped back to the target units
        scaler = method.model.target_scaler
        members = []
        with method.evaluating(), torch.no_grad():
            for m in range(method.members):
                with method.member(m) as view:
                    members.append(view.head.predict(view.features(FIRST, SECOND)))
        means = torch.stack([scaler.mean.float() + scaler.std.float() * p.mean for p in members])
        variances = torch.stack([scaler.std.float() ** 2 * p.var for p in members])
        ref = GaussianPredictive.from_samples(means, variances)
        torch.testing.assert_close(pred.mean, ref.mean)
        torch.testing.assert_close(pred.var, ref.var)
        torch.testing.assert_close(pred.epistemic_var, ref.epistemic_var)


@pytest.mark.parametrize("kind", ["mc_dropout", "ensemble", "blob", "tfb"])
def test_methods_meet_the_contract_with_a_regression_head(kind, offline_tokenizer, tmp_path):
    from test_contract import _BASE, _run_contract

    from bayeshead.config import load_config

    config = load_config(overrides=[*_BASE, "head.kind=gaussian", f"method.kind={kind}"])
    _run_contract(offline_tokenizer, config, "regression", tmp_path)


def test_laplace_lora_refuses_a_regression_head():
    from bayeshead.config import load_config
    from bayeshead.methods.laplace_lora import LaplaceLoRA

    config = load_config(overrides=["adapter.kind=lora", "head.kind=gaussian", "method.kind=laplace_lora"])
    with pytest.raises(BayesheadError, match="classification only.*laplace_regression"):
        LaplaceLoRA.check_config(config)


# -- evaluation ---------------------------------------------------------------------------------------------


def test_evaluate_scores_a_gaussian_predictive_with_regression_metrics():
    from bayeshead.metrics.regression import regression_metrics

    g = torch.Generator().manual_seed(0)
    y = torch.randn(50, generator=g, dtype=torch.float64)
    pred = GaussianPredictive(y.unsqueeze(1) + 0.3, torch.full((50, 1), 0.5, dtype=torch.float64), torch.full((50, 1), 0.1, dtype=torch.float64))
    ood = GaussianPredictive(torch.zeros(20, 1, dtype=torch.float64), torch.full((20, 1), 2.0, dtype=torch.float64), torch.full((20, 1), 1.0, dtype=torch.float64))
    out = evaluate(pred, y, ood)
    reference = regression_metrics(pred.mean, pred.var, y.unsqueeze(1))
    for key, value in reference.items():
        assert out[key] == pytest.approx(value)
    assert out["ood_auroc_variance"] == 1.0 and out["ood_auroc_epistemic"] == 1.0
    assert len(out["calibration_curve"]["expected"]) == 99
    rows = per_example(pred, y)
    assert rows["target"] == pytest.approx(y.tolist()) and rows["nll"] == pytest.approx(pred.nll(y).tolist())
    assert rows["squared_error"] == pytest.approx([0.09] * 50)


def test_predict_dataset_passes_pairs_batch_by_batch():
    seen = []

    def predict(texts, *, generator, text_pair=None):
        seen.append((list(texts), list(text_pair)))
        return GaussianPredictive(torch.zeros(len(texts), 1), torch.ones(len(texts), 1))

    pred = predict_dataset(predict, FIRST, 4, text_pair=SECOND)
    assert pred.mean.shape == (6, 1)
    assert seen == [(FIRST[:4], SECOND[:4]), (FIRST[4:], SECOND[4:])]
    with pytest.raises(ValueError, match="text_pair"):
        predict_dataset(predict, FIRST, 4, text_pair=SECOND[:2])


# -- bench data and report -----------------------------------------------------------------------------------


def test_stsb_benchmark_splits_by_genre(tmp_path):
    from bayeshead.bench.data import stsb_benchmark

    rows = []
    for i in range(30):
        genre = ("main-captions", "main-news", "main-forum")[i % 3]
        rows.append(f"{genre}\tsrc\t2012\t{i:04d}\t{(i % 6) * 0.9:.2f}\tfirst {i}\tsecond {i}")
    (tmp_path / "stsb").mkdir()
    for split in ("train", "dev", "test"):
        (tmp_path / "stsb" / f"sts-{split}.csv").write_text("\n".join(rows) + "\n")
    data = stsb_benchmark(10, 5, None, 4, seed=0, data_dir=tmp_path)
    assert (len(data.train), len(data.val), len(data.test)) == (10, 5, 20)
    assert set(data.train.texts).isdisjoint(data.val.texts)
    assert data.train.is_regression and data.train.is_paired and data.num_outputs == 1
    forum = data.ood_sets["forum"]
    assert len(forum) == 4 and all(int(t.split()[1]) % 3 == 2 for t in forum.texts)
    assert all(int(t.split()[1]) % 3 != 2 for t in data.test.texts)
    classes = stsb_benchmark(10, 5, None, 4, seed=0, data_dir=tmp_path, target_type="classification")
    scores = {f"first {i}": (i % 6) * 0.9 for i in range(30)}
    for text, label in zip(classes.test.texts, classes.test.labels.tolist(), strict=True):
        assert label == (0 if scores[text] < 2 else 1 if scores[text] < 4 else 2)
    assert classes.test.text_pair == data.test.text_pair


def _regression_record(method: str, seed: int, shift: float) -> dict:
    from bayeshead.evaluation import labelled_set_metrics

    g = torch.Generator().manual_seed(seed)
    y = torch.rand(40, generator=g, dtype=torch.float64) * 5
    pred = GaussianPredictive((y + shift).unsqueeze(1), torch.full((40, 1), 0.6, dtype=torch.float64))
    ood = GaussianPredictive(torch.linspace(1, 4, 10, dtype=torch.float64).unsqueeze(1), torch.full((10, 1), 1.5, dtype=torch.float64))
    metrics = evaluate(pred, y)
    metrics.update({f"forum/{k}": v for k, v in labelled_set_metrics(pred, ood, torch.rand(10, dtype=torch.float64)).items()})
    return {
        "method": method, "seed": seed, "task": None, "metrics": metrics, "train_seconds": 1.0, "predict_seconds": 0.5,
        "suite_position": {"task": 0, "method": 0 if method == "base" else 1},
        "per_example": {"test": per_example(pred, y)},
    }


def test_report_of_regression_runs_has_regression_columns_and_figures(tmp_path):
    from bayeshead.bench.report import write_report

    runs = [_regression_record(m, s, shift) for m, shift in (("base", 0.0), ("other", 0.5)) for s in (0, 1)]
    written = write_report(runs, tmp_path)
    table = written["markdown"].read_text()
    header = table.splitlines()[0]
    for title in ("RMSE", "Spearman", "CRPS", "cov. 90%", "cal. error"):
        assert title in header
    assert "ACC" not in header and "Paired differences" not in table
    assert "forum Spearman" in table and "predictive variance score" in table
    for key in ("calibration", "calibration:base", "predicted_vs_true:other", "comparison"):
        assert written[key].is_file() and written[key].stat().st_size > 1000
    rmse_other = [line for line in table.splitlines() if line.startswith("| other")][0]
    assert "0.500 ± 0.000" in rmse_other  # RMSE of a constant 0.5 offset, both seeds
