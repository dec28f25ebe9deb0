"""BayesianModel on MiniLM with the deterministic head: train, predict, save, load, refuse bad dirs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from bayeshead.config import load_config
from bayeshead.data import TextDataset
from bayeshead.model import BayesianModel
from bayeshead.serialization import SerializationError

TRAIN = TextDataset(
    texts=[
        "I love this, it is wonderful", "what a great day", "fantastic work, thank you",
        "this is terrible", "I hate waiting in line", "awful service and rude staff",
        "the meeting is at noon", "the train leaves from platform two",
    ] * 2,
    labels=[2, 2, 2, 0, 0, 0, 1, 1] * 2,
    class_names=["negative", "neutral", "positive"],
)
TEST = ["absolutely brilliant", "really bad experience", "the report is on the desk"]


@pytest.fixture(scope="module")
def trained(minilm_backbone):
    config = load_config(overrides=["training.epochs=3", "training.batch_size=4", "optimizer.lr=0.05", "head.weight_decay=1e-3", "training.progress=false"])
    model = BayesianModel.from_config(config, num_outputs=3, backbone=minilm_backbone)
    before = model.head.weight.detach().clone()
    history = model.fit(TRAIN)
    return model, before, history


def test_training_steps_change_the_head_and_lower_the_loss(trained, minilm_backbone):
    model, before, history = trained
    assert len(history) == 12  # 3 epochs x 16 examples / batch 4
    assert not torch.equal(before, model.head.weight)
    assert history[-1]["total"] < history[0]["total"]
    assert {"nll", "weight_decay", "total"} <= set(history[0])
    assert not any(p.requires_grad for p in minilm_backbone.parameters())  # frozen without adapter
    assert model.head.config.n_train == len(TRAIN)


def test_predictions_are_valid_and_sensible(trained):
    model, _, _ = trained
    predictive = model.predict(TEST)
    torch.testing.assert_close(predictive.probs.sum(-1), torch.ones(3))
    assert predictive.probs.argmax(-1).tolist() == [2, 0, 1]


def test_save_and_load_gives_bit_identical_probabilities(trained, tmp_path, minilm_backbone):
    model, _, _ = trained
    expected = model.predict(TEST).probs
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MANIFEST.json", "config.json", "head.safetensors", "metadata.json"]
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.bin")) and not list(tmp_path.glob("*.pkl"))
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert meta["schema_version"] == 1 and meta["versions"]["torch"].startswith("2.")
    # Reload with a fresh backbone loaded from the saved config, and with the shared one.
    fresh = BayesianModel.from_pretrained(tmp_path)
    assert torch.equal(fresh.predict(TEST).probs, expected)
    shared = BayesianModel.from_pretrained(tmp_path, backbone=minilm_backbone)
    assert torch.equal(shared.predict(TEST).probs, expected)
    assert shared.config == model.config.model_copy(update={"head": model.head.config})


def _saved(model, tmp_path):
    """A saved folder without its MANIFEST.json (an older bayeshead's format), so that the checks
    below the manifest are reached; the manifest's own checks are in test_saved_model_safety.py."""
    model.save_pretrained(tmp_path)
    (tmp_path / "MANIFEST.json").unlink()
    return tmp_path


def test_unknown_schema_version_is_refused(trained, tmp_path, minilm_backbone):
    directory = _saved(trained[0], tmp_path)
    meta = json.loads((directory / "metadata.json").read_text())
    meta["schema_version"] = 99
    (directory / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(SerializationError, match="unknown schema_version 99"):
        BayesianModel.from_pretrained(directory, backbone=minilm_backbone)


@pytest.mark.parametrize("missing", ["config.json", "metadata.json", "head.safetensors"])
def test_missing_files_are_refused(trained, tmp_path, minilm_backbone, missing):
    directory = _saved(trained[0], tmp_path)
    (directory / missing).unlink()
    with pytest.raises(SerializationError, match=f"missing {missing}"):
        BayesianModel.from_pretrained(directory, backbone=minilm_backbone)


def test_wrong_shapes_and_names_are_refused(trained, tmp_path, minilm_backbone):
    directory = _saved(trained[0], tmp_path)
    state = load_file(str(directory / "head.safetensors"))
    state["linear.weight"] = torch.zeros(3, 5)
    state["surprise"] = torch.zeros(1)
    del state["linear.bias"]
    save_file(state, str(directory / "head.safetensors"))
    with pytest.raises(SerializationError) as info:
        BayesianModel.from_pretrained(directory, backbone=minilm_backbone)
    message = str(info.value)
    assert "missing tensors ['linear.bias']" in message
    assert "unexpected tensors ['surprise']" in message
    assert "linear.weight: file (3, 5) vs model (3, 384)" in message


def test_corrupt_files_are_refused(trained, tmp_path, minilm_backbone):
    directory = _saved(trained[0], tmp_path)
    data = (directory / "head.safetensors").read_bytes()
    (directory / "head.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(SerializationError, match="corrupt or truncated"):
        BayesianModel.from_pretrained(directory, backbone=minilm_backbone)
    (directory / "config.json").write_text("{not json")
    with pytest.raises(SerializationError, match="config.json: not valid JSON"):
        BayesianModel.from_pretrained(directory, backbone=minilm_backbone)


def test_fit_refuses_labels_beyond_the_head(minilm_backbone):
    model = BayesianModel.from_config(load_config(), num_outputs=2, backbone=minilm_backbone)
    with pytest.raises(ValueError, match="label 2 but the head predicts 2 classes"):
        model.fit(TRAIN)
