"""Baselines: temperature scaling and MC dropout (head and full modes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from bayeshead.backbones.base import Backbone
from bayeshead.config import ExperimentConfig
from bayeshead.errors import UserInputError
from bayeshead.heads.deterministic import DeterministicHead
from bayeshead.heads.mc_dropout import MCDropoutHead, MCDropoutHeadConfig
from bayeshead.heads.temperature import TemperatureHead, TemperatureHeadConfig
from bayeshead.methods.mc_dropout import MCDropout
from bayeshead.model import BayesianModel
from bayeshead.registry import HEADS


# -- temperature --------------------------------------------------------------------------------
def _overconfident_head() -> tuple[TemperatureHead, Tensor, Tensor]:
    torch.manual_seed(0)
    head = TemperatureHead(4, 3)
    x = torch.randn(200, 4)
    y = (x @ torch.randn(3, 4).T + 1.5 * torch.randn(200, 3)).argmax(1)  # noisy labels
    with torch.no_grad():
        head.linear.weight.mul_(25.0)  # far too confident
    return head, x, y


def test_temperature_lowers_validation_nll_and_is_positive(tmp_path):
    head, x, y = _overconfident_head()
    with head.training_predictive():  # the MAP head (T = 1) before the fit
        before = head.predict(x).nll(y).mean()
    head.fit_posthoc(x, y)
    after = head.predict(x).nll(y).mean()
    t = float(head.temperature)
    assert t > 1.0  # an over-confident head is cooled
    assert after <= before - 0.1
    # a stationary point of the validation NLL in T
    for factor in (0.9, 1.1):
        scaled = torch.log_softmax(head.logits(x) / (t * factor), -1).gather(1, y[:, None]).neg().mean()
        assert scaled >= after - 1e-6
    # accuracy unchanged; T survives save/load
    assert torch.equal(head.predict(x).probs.argmax(-1), head.logits(x).argmax(-1))
    save_file(dict(head.state_dict()), str(tmp_path / "t.safetensors"))
    fresh = TemperatureHead(4, 3)
    fresh.load_state_dict(load_file(str(tmp_path / "t.safetensors")))
    torch.testing.assert_close(fresh.predict(x).probs, head.predict(x).probs)


def test_temperature_heats_an_underconfident_head():
    torch.manual_seed(1)
    head = TemperatureHead(4, 3, TemperatureHeadConfig(init_temperature=1.0))
    x = torch.randn(100, 4)
    with torch.no_grad():
        head.linear.weight.copy_(0.05 * torch.randn(3, 4))
    y = head.logits(x).argmax(1)  # labels it ranks right, but probabilities near uniform
    with pytest.warns(RuntimeWarning, match="lower limit of its search"):  # separable: T runs to its limit
        head.fit_posthoc(x, y)
    assert float(head.temperature) == pytest.approx(head.config.min_temperature, rel=1e-3)


# -- MC dropout, head mode ----------------------------------------------------------------------
class CountingBackbone(Backbone):
    """A tiny backbone on float inputs with dropout and batch norm; counts its passes."""

    def __init__(self, d_in: int = 6, d: int = 5, p: float = 0.3) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Linear(d_in, d), nn.BatchNorm1d(d), nn.Dropout(p), nn.Tanh())
        self.calls = 0

    @property
    def feature_dim(self) -> int:
        return 5

    def tokenize(self, texts: Sequence[str]) -> dict[str, Tensor]:
        raise NotImplementedError

    def features(self, batch: Mapping[str, Tensor]) -> Tensor:
        self.calls += 1
        return self.model(batch["x"])


def test_head_mode_samples_differ_are_seeded_and_use_one_backbone_pass():
    torch.manual_seed(0)
    backbone = CountingBackbone()
    backbone.model(torch.randn(32, 6))  # give batch norm running statistics
    head = MCDropoutHead(5, 3, MCDropoutHeadConfig(p=0.3, n_samples=16))
    model = BayesianModel(backbone, head)
    batch = {"x": torch.randn(8, 6)}
    backbone.calls = 0
    pred = model.predict(batch, n_samples=16, generator=torch.Generator().manual_seed(3))
    assert backbone.calls == 1
    assert pred.samples is not None and pred.samples.shape == (16, 8, 3)
    assert pred.samples.var(0).gt(1e-8).all()  # dropout really is on at prediction
    assert pred.mutual_information().gt(0).all()
    torch.testing.assert_close(pred.probs.sum(-1), torch.ones(8))
    again = model.predict(batch, n_samples=16, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(again.probs, pred.probs, rtol=0, atol=0)
    other = model.predict(batch, n_samples=16, generator=torch.Generator().manual_seed(4))
    assert not torch.equal(other.probs, pred.probs)


def test_head_mode_dropout_is_inverted_and_off_in_eval_loss():
    torch.manual_seed(0)
    head = MCDropoutHead(5, 3, MCDropoutHeadConfig(p=0.5))
    x = torch.randn(4, 5)
    logits = head.sample_logits(x, 4000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(logits.mean(0), head.linear(x), atol=0.1, rtol=0)  # E[mask/(1-p)] = 1
    y = torch.randint(0, 3, (4,))
    head.eval()
    torch.testing.assert_close(head.loss(x, y).total, nn.functional.cross_entropy(head.linear(x), y))


def test_mc_dropout_config_errors_and_registry():
    assert HEADS.get("mc_dropout") is MCDropoutHead and HEADS.get("temperature") is TemperatureHead
    with pytest.raises(ValueError, match="greater than 0"):
        MCDropoutHeadConfig(p=0.0)
    with pytest.raises(ValueError, match="method.kind=mc_dropout"):  # the old full mode says where it went
        MCDropoutHeadConfig(p=0.1, mode="full")


# -- MC dropout through the whole model (the mc_dropout method) -----------------------------------
def _dropout_method(backbone: CountingBackbone, n_samples: int = 10) -> MCDropout:
    head = DeterministicHead(5, 3)
    config = ExperimentConfig(head=head.config, method={"kind": "mc_dropout", "n_samples": n_samples})
    method = MCDropout(BayesianModel(backbone, head, config))
    method.prepare_model()
    return method


def test_method_runs_t_backbone_passes_with_only_dropout_on():
    torch.manual_seed(0)
    backbone = CountingBackbone(p=0.4)
    backbone.model(torch.randn(32, 6))
    method = _dropout_method(backbone)
    model = method.model
    model.train()
    bn = backbone.model[1]
    stats = (bn.running_mean.clone(), bn.running_var.clone())
    batch = {"x": torch.randn(4, 6)}
    backbone.calls = 0
    cpu_state = torch.get_rng_state()
    pred = method.predict(batch, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), cpu_state)  # caller's RNG untouched
    assert backbone.calls == 10
    assert pred.samples.shape == (10, 4, 3) and pred.samples.var(0).gt(1e-8).all()
    torch.testing.assert_close(pred.probs, pred.samples.mean(0))
    # batch norm stayed in eval (running statistics untouched); training flags restored
    assert torch.equal(bn.running_mean, stats[0]) and torch.equal(bn.running_var, stats[1])
    assert all(m.training for m in model.modules())
    again = method.predict(batch, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(again.probs, pred.probs, rtol=0, atol=0)
    assert method.predict(batch, n_samples=3, generator=torch.Generator()).samples.shape[0] == 3


def test_method_refuses_a_model_without_dropout():
    with pytest.raises(UserInputError, match="no dropout module with p > 0"):
        _dropout_method(CountingBackbone(p=0.0))
