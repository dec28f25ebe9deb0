"""Post-hoc heads refuse to predict before their fit (the trainer still scores the MAP network);
post-hoc fits warn when their optimum runs to a limit of the search; a 1-class classifier is
refused. Bad inputs have ids starting "bad-"."""

from __future__ import annotations

import functools
import json
import math
import warnings

import pytest
import torch
from _helpers import SENTIMENT, tiny_model

from bayeshead.data import TextDataset
from bayeshead.errors import NotFittedError, UserInputError
from bayeshead.heads.laplace import LaplaceHead, LaplaceHeadConfig
from bayeshead.heads.temperature import TemperatureHead, TemperatureHeadConfig
from bayeshead.registry import HEADS
from bayeshead.training import Trainer

TRAIN = TextDataset(*SENTIMENT)
VAL = TextDataset(["good fun", "so bad", "lovely", "awful"], [1, 0, 1, 0])


def _no_bound_warning(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    assert not [w for w in caught if "limit of its search" in str(w.message)], [str(w.message) for w in caught]
    return out


# -- predict before the post-hoc fit ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("head", "call"),
    [
        pytest.param(LaplaceHead(4, 3), "fit_posthoc(train_features, train_labels)", id="bad-predict-laplace-before-fit"),
        pytest.param(TemperatureHead(4, 3), "fit_posthoc(val_features, val_labels)", id="bad-predict-temperature-before-fit"),
    ],
)
def test_a_post_hoc_head_refuses_to_predict_before_its_fit(head, call):
    x = torch.randn(5, 4)
    with pytest.raises(NotFittedError, match=rf"has not been fitted; call head\.{call.replace('(', '[(]').replace(')', '[)]')}"):
        head.predict(x)
    with head.training_predictive():  # the trainer's view: the MAP softmax
        torch.testing.assert_close(head.predict(x).probs, torch.softmax(head.logits(x), -1))
        with head.training_predictive():  # nests
            head.predict(x)
        head.predict(x)
    with pytest.raises(NotFittedError):
        head.predict(x)


def test_the_trainer_scores_the_map_network_and_the_model_refuses_before_fit(offline_tokenizer):
    for kind in ("temperature", "laplace"):
        model = tiny_model(offline_tokenizer, [f"head.kind={kind}", "training.max_steps=2"])
        with pytest.raises(NotFittedError, match=f"{kind} head: predict needs"):
            model.predict(VAL.texts)
        history = Trainer(model).fit(TRAIN, VAL)
        assert "val_nll" in history[-1]
        with torch.no_grad():
            logits = model.head.logits(model.features(VAL.texts))  # the MAP weights are what trained
        map_nll = float(torch.nn.functional.cross_entropy(logits.double(), VAL.labels))
        assert history[-1]["val_nll"] == pytest.approx(map_nll, rel=1e-5)
        pred = model.predict(VAL.texts)  # fitted now
        assert pred.probs.shape == (4, 2)


def test_a_temperature_state_saved_before_the_fitted_flag_loads_as_fitted():
    head = TemperatureHead(4, 3)
    old = {k: v for k, v in head.state_dict().items() if k != "fitted"}
    old["temperature"] = torch.tensor(2.0)
    fresh = TemperatureHead(4, 3)
    fresh.load_state_dict(old)
    assert fresh.is_fitted and float(fresh.temperature) == 2.0
    assert set(fresh.upgrade_state_dict(old)) == set(head.state_dict())
    fresh.predict(torch.randn(2, 4))


# -- a 1-class classifier -----------------------------------------------------------------------------
def test_bad_num_outputs_1_for_a_classifier_is_refused(offline_tokenizer):
    classifiers = [k for k in HEADS.names() if HEADS.get(k).task_type == "classification"]
    assert {"deterministic", "laplace", "temperature", "vbll_classification"} <= set(classifiers)
    for kind in classifiers:
        with pytest.raises(UserInputError, match="at least 2 classes, got num_outputs=1"):
            HEADS.get(kind)(8, 1)
    with pytest.raises(UserInputError, match="1-class classifier"):
        tiny_model(offline_tokenizer, ["head.kind=deterministic"], num_outputs=1)
    HEADS.get("gaussian")(8, 1)  # one regression target is fine


# -- temperature at a limit -------------------------------------------------------------------------
def _head_and_logits(seed: int, scale: float) -> tuple[TemperatureHead, torch.Tensor]:
    torch.manual_seed(seed)
    head = TemperatureHead(4, 3)
    with torch.no_grad():
        head.linear.weight.mul_(scale)
    x = torch.randn(200, 4)
    return head, x


def test_bad_separable_validation_data_runs_temperature_to_its_lower_limit_and_warns():
    head, x = _head_and_logits(0, 5.0)
    y = head.logits(x).argmax(1)  # the head separates them: NLL keeps falling as T -> 0
    with pytest.warns(RuntimeWarning, match=r"temperature T: the fit ended at the lower limit .*\[0\.05, 100\]"):
        head.fit_posthoc(x, y)
    assert float(head.temperature) == pytest.approx(0.05, rel=1e-3)


def test_bad_confidently_wrong_validation_labels_run_temperature_to_its_upper_limit_and_warn():
    head, x = _head_and_logits(1, 5.0)
    y = head.logits(x).argmin(1)  # always wrong: NLL keeps falling as T -> infinity
    with pytest.warns(RuntimeWarning, match="upper limit of its search"):
        head.fit_posthoc(x, y)
    assert float(head.temperature) == pytest.approx(100.0, rel=1e-3)


def test_an_interior_temperature_does_not_warn_and_is_the_minimum():
    head, x = _head_and_logits(2, 25.0)
    y = (head.logits(x) + 40.0 * torch.randn(200, 3)).argmax(1)  # noisy labels: over-confident head
    _no_bound_warning(lambda: head.fit_posthoc(x, y))
    t = float(head.temperature)
    assert 0.05 < t < 100.0

    @torch.no_grad()
    def nll(temperature: float) -> float:
        return float(torch.nn.functional.cross_entropy(head.logits(x).double() / temperature, y))

    assert nll(t) <= min(nll(t * 0.99), nll(t * 1.01)) + 1e-12
    with pytest.raises(ValueError, match="min_temperature must be below max_temperature"):
        TemperatureHeadConfig(min_temperature=2.0, max_temperature=1.0)


# -- Laplace prior precision at a limit ---------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _map_weights() -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """A MAP-trained linear softmax head on noisy 3-class data (trained once for every test)."""
    torch.manual_seed(0)
    x = torch.randn(120, 4)
    y = (x @ torch.randn(4, 3) + 0.8 * torch.randn(120, 3)).argmax(1)
    head = LaplaceHead(4, 3, LaplaceHeadConfig(weight_decay=1e-2))
    optimizer = torch.optim.Adam(head.parameters(), lr=0.1)
    for _ in range(60):
        optimizer.zero_grad()
        head.loss(x, y).total.backward()
        optimizer.step()
    return {k: v.detach().clone() for k, v in head.linear.state_dict().items()}, x, y


def _map_laplace(**cfg) -> tuple[LaplaceHead, torch.Tensor, torch.Tensor]:
    weights, x, y = _map_weights()
    head = LaplaceHead(4, 3, LaplaceHeadConfig(hessian_structure="full", weight_decay=1e-2, **cfg))
    head.linear.load_state_dict(weights)
    return head, x, y


def test_bad_laplace_marglik_that_runs_out_of_reach_warns():
    head, x, y = _map_laplace(prior_precision=1e6, marglik_steps=5)  # 5 Adam steps of 0.1 from log 1e6
    with pytest.warns(RuntimeWarning, match=r"prior precision \(marglik, log δ\): the fit ended at the lower limit"):
        head.fit_posthoc(x, y)
    assert math.log(float(head.prior_precision)) == pytest.approx(math.log(1e6) - 0.5, abs=0.05)


def test_bad_laplace_gridsearch_at_the_end_of_its_grid_warns():
    head, x, y = _map_laplace(prior_optimization="gridsearch", grid_log10_min=4.0, grid_log10_max=6.0, grid_size=5)
    # scored on its own training data, the sharpest posterior (the largest δ) always wins
    with pytest.warns(RuntimeWarning, match=r"gridsearch, log10 δ\): the fit ended at the upper limit .*\[4, 6\]"):
        head.fit_posthoc(x, y, val_features=x, val_targets=y)
    assert float(head.prior_precision) == pytest.approx(1e6)


def test_a_laplace_prior_inside_its_search_does_not_warn():
    head, x, y = _map_laplace()
    _no_bound_warning(lambda: head.fit_posthoc(x, y))
    head, x, y = _map_laplace(prior_optimization="gridsearch", grid_size=9)
    x_val = torch.randn(80, 4)
    y_val = torch.randint(0, 3, (80,))  # held-out labels the head cannot predict: a broad posterior helps
    _no_bound_warning(lambda: head.fit_posthoc(x, y, val_features=x_val, val_targets=y_val))


class _Evidence:
    """An adapter Laplace stand-in with log Z(δ) = −(log δ − peak)²."""

    def __init__(self, peak: float) -> None:
        self.peak = peak

    def log_marginal_likelihood(self, delta: float) -> float:
        return -((math.log(delta) - self.peak) ** 2)


@pytest.mark.parametrize(
    ("peak", "side"),
    [pytest.param(14.0, "upper", id="bad-adapter-laplace-prior-beyond-upper"),
     pytest.param(-12.0, "lower", id="bad-adapter-laplace-prior-beyond-lower")],
)
def test_adapter_laplace_prior_search_at_its_bound_warns(peak, side):
    from bayeshead.methods.adapter_laplace import optimize_log_prior_precision

    with pytest.warns(RuntimeWarning, match=f"the fit ended at the {side} limit .*\\[-10, 10\\]"):
        delta = optimize_log_prior_precision(_Evidence(peak))
    assert math.log(delta) == pytest.approx(10.0 if side == "upper" else -10.0, abs=1e-2)
    inside = _no_bound_warning(lambda: optimize_log_prior_precision(_Evidence(3.0)))
    assert math.log(inside) == pytest.approx(3.0, abs=1e-3)


# -- TFB's β at a limit ---------------------------------------------------------------------------------
def _tfb(tokenizer, threshold: float, beta_min: float, beta_max: float):
    from bayeshead.methods.tfb import TFB

    model = tiny_model(tokenizer, [
        "adapter.kind=lora", "adapter.rank=2", "adapter.target_modules=[q_proj, v_proj]", "head.kind=deterministic",
        "training.batch_size=4", "optimizer.lr=0.05", "method.kind=tfb", "training.max_steps=6", "method.iterations=3",
        "method.search_samples=2", f"method.threshold={threshold}", f"method.beta_min={beta_min}",
        f"method.beta_max={beta_max}", "method.anchor_targets=predictions",
    ])
    method = TFB(model)
    method.prepare_model()
    return method


@pytest.mark.parametrize(
    ("threshold", "betas", "side"),
    [pytest.param(1e6, (1e-3, 0.2), "upper", id="bad-tfb-beta-at-beta-max"),
     pytest.param(1e-9, (5.0, 10.0), "lower", id="bad-tfb-beta-at-beta-min")],
)
def test_tfb_beta_at_a_limit_warns(offline_tokenizer, threshold, betas, side):
    method = _tfb(offline_tokenizer, threshold, *betas)
    with pytest.warns(RuntimeWarning, match=f"method tfb: β: the fit ended at the {side} limit"):
        method.fit(TRAIN)
    assert method.posthoc["tfb_beta"] == (betas[1] if side == "upper" else betas[0])


def test_an_old_temperature_folder_without_the_fitted_flag_loads_fitted(offline_tokenizer, tmp_path):
    from safetensors.torch import load_file, save_file

    from bayeshead.model import BayesianModel
    from bayeshead.serialization import LegacyFormatWarning

    model = tiny_model(offline_tokenizer, ["head.kind=temperature", "training.max_steps=1"])
    Trainer(model).fit(TRAIN, VAL)
    saved = model.save_pretrained(tmp_path / "m")
    # as an older bayeshead wrote it: no flag in the head file or its listing, no manifest
    state = {k: v for k, v in load_file(str(saved / "head.safetensors")).items() if k != "fitted"}
    save_file(state, str(saved / "head.safetensors"), metadata={"format": "pt"})
    meta = json.loads((saved / "metadata.json").read_text())
    meta["files"]["head.safetensors"].pop("fitted")
    (saved / "metadata.json").write_text(json.dumps(meta))
    (saved / "MANIFEST.json").unlink()
    with pytest.warns(LegacyFormatWarning):
        again = BayesianModel.from_pretrained(saved, backbone=model.backbone)
    assert again.head.is_fitted
    assert torch.equal(again.predict(VAL.texts).probs, model.predict(VAL.texts).probs)


# -- regression heads with a post-hoc stage -----------------------------------------------------------
@pytest.mark.parametrize("kind", ["laplace_regression", "variance_scaling"])
def test_a_regression_head_with_a_post_hoc_fit_refuses_to_predict_before_it(kind):
    head = HEADS.get(kind)(4, 1)
    features, targets = torch.randn(12, 4), torch.randn(12)
    with pytest.raises(NotFittedError, match="fit_posthoc"):
        head.predict(features[:2])
    with head.training_predictive():  # what the trainer scores validation data with
        during = head.predict(features[:2])
    assert during.var.shape == (2, 1) and (during.var > 0).all()
    head.set_n_train(12)
    head.fit_posthoc(features, targets)
    after = head.predict(features[:2])
    assert torch.isfinite(after.mean).all() and (after.var > 0).all()


def test_a_variance_scale_saved_before_the_fitted_flag_loads_as_fitted():
    head = HEADS.get("variance_scaling")(4, 1)
    old = {k: v for k, v in head.state_dict().items() if k != "fitted"}
    old["variance_scale"] = torch.tensor(2.0, dtype=torch.float64)
    fresh = HEADS.get("variance_scaling")(4, 1)
    fresh.load_state_dict(old)
    assert bool(fresh.fitted) and float(fresh.variance_scale) == 2.0
    assert set(fresh.upgrade_state_dict(old)) == set(head.state_dict())
    fresh.predict(torch.randn(2, 4))
