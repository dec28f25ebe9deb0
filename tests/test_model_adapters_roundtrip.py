"""PoLAR-adapted MiniLM + VBLL head through BayesianModel: train, save, load, identical output."""

from __future__ import annotations

import torch

from bayeshead.backbones.huggingface import HuggingFaceBackbone
from bayeshead.config import load_config
from bayeshead.data import TextDataset
from bayeshead.manifolds import orthogonality_error
from bayeshead.model import BayesianModel

TRAIN = TextDataset(
    ["great film", "loved it", "awful plot", "boring and bad", "a masterpiece", "a waste of time"],
    [1, 1, 0, 0, 1, 0],
)


def test_polar_vbll_model_round_trips_bit_identically(tmp_path):
    config = load_config(
        overrides=[
            "adapter.kind=polar", "adapter.rank=4", "adapter.target_modules=[query, value]",
            "head.kind=vbll_classification", "head.covariance=dense",
            "optimizer.kind=riemannian_adam", "optimizer.lr=0.01",
            "training.epochs=2", "training.batch_size=3", "training.progress=false",
            "backbone.max_length=32",
        ]
    )
    backbone = HuggingFaceBackbone.from_config(config.backbone)
    model = BayesianModel.from_config(config, num_outputs=2, backbone=backbone)
    assert len(model.adapted_modules) == 12  # query and value in 6 layers
    polar = backbone.model.encoder.layer[0].attention.self.query
    theta_before = polar.theta.detach().clone()
    model.fit(TRAIN)
    assert not torch.equal(theta_before, polar.theta)  # the adapter trained
    assert float(orthogonality_error(polar.U.detach())) < 1e-5
    expected = model.predict(["what a film", "dreadful"]).probs

    model.save_pretrained(tmp_path)
    assert (tmp_path / "adapters.safetensors").is_file()
    loaded = BayesianModel.from_pretrained(tmp_path)  # fresh backbone from the saved config
    assert loaded.adapted_modules == model.adapted_modules
    assert torch.equal(loaded.predict(["what a film", "dreadful"]).probs, expected)
