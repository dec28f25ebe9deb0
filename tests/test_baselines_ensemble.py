"""Deep ensembles: head-only members on shared features, and adapter members on one backbone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bayeshead.adapters import LoRAConfig, adapter_modules
from bayeshead.heads.deterministic import DeterministicHead
from bayeshead.heads.ensemble import AdapterEnsemble, EnsembleHead, EnsembleHeadConfig
from bayeshead.registry import HEADS


def test_head_members_differ_train_independently_and_mix():
    assert HEADS.get("ensemble") is EnsembleHead
    torch.manual_seed(0)
    head = EnsembleHead(4, 3, EnsembleHeadConfig(members=4, seed=10))
    weights = [m.weight.detach().clone() for m in head.members]
    assert all(not torch.equal(weights[0], w) for w in weights[1:])
    same = EnsembleHead(4, 3, EnsembleHeadConfig(members=4, seed=10))
    assert all(torch.equal(a.weight, b.weight) for a, b in zip(head.members, same.members, strict=True))  # seeded

    x = torch.randn(64, 4)
    y = (x @ torch.randn(3, 4).T).argmax(1)
    opt = torch.optim.SGD(head.parameters(), lr=0.5)
    for _ in range(100):
        opt.zero_grad()
        head.loss(x, y).total.backward()
        opt.step()
    for layer in head.members:  # each member fits the data by itself
        assert (layer(x).argmax(1) == y).float().mean() > 0.9
    pred = head.predict(x[:5])
    manual = torch.stack([torch.softmax(layer(x[:5]), -1) for layer in head.members]).mean(0)
    torch.testing.assert_close(pred.probs, manual)
    assert pred.samples.shape == (4, 5, 3) and pred.mutual_information().gt(0).all()


def _tiny_backbone() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 5))


def test_adapter_members_share_one_copy_of_the_base_weights():
    model = _tiny_backbone()
    base_ptrs = [model[0].weight.data_ptr(), model[2].weight.data_ptr()]
    config = LoRAConfig(rank=2, target_modules=["0", "2"])
    ens = AdapterEnsemble(model, config, members=3, seed=5)
    adapters = adapter_modules(model)
    assert len(adapters) == 2
    assert [a.base_layer.weight.data_ptr() for a in adapters.values()] == base_ptrs
    # members differ (different seeds), and no member holds a base weight
    a0, a1 = ens.member_state(0), ens.member_state(1)
    assert any(not torch.equal(a0[k], a1[k]) for k in a0)
    assert not any("base_layer" in k for k in a0)
    assert all(buf.data_ptr() not in base_ptrs for buf in ens.buffers())

    x = torch.randn(16, 6)
    heads = [DeterministicHead(5, 2) for _ in range(3)]
    # train member 1 only: its adapter values change, the others' and the base weights do not
    before = {m: {k: v.clone() for k, v in ens.member_state(m).items()} for m in range(3)}
    base_before = adapters["0"].base_layer.weight.detach().clone()
    with ens.member(1):
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=0.5)
        for _ in range(3):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    assert any(not torch.equal(before[1][k], ens.member_state(1)[k]) for k in before[1])
    for m in (0, 2):
        assert all(torch.equal(before[m][k], ens.member_state(m)[k]) for k in before[m])
    torch.testing.assert_close(adapters["0"].base_layer.weight, base_before, rtol=0, atol=0)
    assert [a.base_layer.weight.data_ptr() for a in adapters.values()] == base_ptrs

    calls = []

    def features(batch):
        calls.append(1)
        return model(batch)

    pred = ens.predict(features, heads, x[:4])
    assert len(calls) == 3 and pred.samples.shape == (3, 4, 2)
    torch.testing.assert_close(pred.probs.sum(-1), torch.ones(4))
    assert pred.mutual_information().gt(0).any()
    with pytest.raises(ValueError, match="expected 3 heads"):
        ens.predict(features, heads[:2], x[:4])
