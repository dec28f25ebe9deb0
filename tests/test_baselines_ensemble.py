"""Deep ensembles of heads on shared features (adapter ensembles: tests/test_methods.py)."""

from __future__ import annotations

import torch

from bayeshead.heads.ensemble import EnsembleHead, EnsembleHeadConfig
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
