"""Saved models: no code runs on load, whole-folder saves are verified, and every damaged or
edited folder is refused naming the file and the field. Bad inputs have ids starting "bad-"."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import pytest
import torch
from _helpers import TEXTS, tiny_model
from safetensors.torch import load_file, save_file

from bayeshead.errors import UserInputError
from bayeshead.methods import load_method
from bayeshead.model import BayesianModel
from bayeshead.serialization import LegacyFormatWarning, SerializationError, read_saved


@pytest.fixture(scope="module")
def model(offline_tokenizer):
    return tiny_model(offline_tokenizer)


@pytest.fixture
def saved(model, tmp_path) -> Path:
    return model.save_pretrained(tmp_path / "model")


def reseal(folder: Path) -> None:
    """Rewrite MANIFEST.json to match the files: what an attacker who edits a folder would do."""
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    for name in manifest["files"]:
        data = (folder / name).read_bytes()
        manifest["files"][name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (folder / "MANIFEST.json").write_text(json.dumps(manifest))


def edit_json(folder: Path, name: str, change) -> None:  # noqa: ANN001
    data = json.loads((folder / name).read_text())
    change(data)
    (folder / name).write_text(json.dumps(data))


def test_a_save_round_trips_with_a_manifest_listing_every_file(model, saved):
    manifest = json.loads((saved / "MANIFEST.json").read_text())
    assert manifest["format"] == "bayeshead-model"
    assert sorted(manifest["files"]) == ["config.json", "head.safetensors", "metadata.json"]
    again = BayesianModel.from_pretrained(saved, backbone=model.backbone)
    assert torch.equal(again.predict(TEXTS).probs, model.predict(TEXTS).probs)


def _custom_code_backbone(root: Path) -> tuple[Path, Path]:
    folder = root / "evil-backbone"
    folder.mkdir()
    marker = root / "code-ran"
    (folder / "config.json").write_text(json.dumps({
        "model_type": "evil_custom",
        "auto_map": {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"},
    }))
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    return folder, marker


def test_bad_a_model_folder_pointing_at_custom_code_is_refused_and_runs_nothing(saved, tmp_path):
    evil, marker = _custom_code_backbone(tmp_path)

    def point_at_evil(config):  # noqa: ANN001
        config["backbone"]["name_or_path"] = str(evil)
        config["backbone"]["trust_remote_code"] = True

    edit_json(saved, "config.json", point_at_evil)
    reseal(saved)  # a consistent folder: only the loader's own rule can stop it
    assert read_saved(saved)[0].backbone.trust_remote_code is False
    with pytest.raises(UserInputError, match="needs its own Python code.*trust_remote_code=True"):
        load_method(saved)
    with pytest.raises(UserInputError, match="needs its own Python code"):
        BayesianModel.from_pretrained(saved)
    assert not marker.exists()


def test_bad_a_backbone_with_only_pickled_weights_is_refused(tmp_path):
    from transformers import BertConfig, BertModel

    from bayeshead.backbones.huggingface import HuggingFaceBackbone

    folder = tmp_path / "pickled"
    net = BertModel(BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
                               vocab_size=30))
    net.save_pretrained(folder)
    for file in folder.glob("*.safetensors"):
        file.unlink()
    torch.save(net.state_dict(), folder / "pytorch_model.bin")  # the pickled form an attacker can abuse
    with pytest.raises(UserInputError, match="safetensors only"):
        HuggingFaceBackbone.from_pretrained(str(folder))


def _flip_byte(folder: Path) -> None:
    data = bytearray((folder / "head.safetensors").read_bytes())
    data[-3] ^= 0x40
    (folder / "head.safetensors").write_bytes(bytes(data))


def _truncate(folder: Path) -> None:
    data = (folder / "head.safetensors").read_bytes()
    (folder / "head.safetensors").write_bytes(data[:-8])


def _set(path: str, value):  # noqa: ANN001, ANN202
    def change(config):  # noqa: ANN001
        section, key = path.split(".")
        config[section][key] = value

    return change


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        pytest.param(_flip_byte, "head.safetensors: sha256 differs", id="bad-flipped-tensor-bytes"),
        pytest.param(_truncate, "head.safetensors: .* bytes but MANIFEST.json says", id="bad-truncated-tensors"),
        pytest.param(lambda f: edit_json(f, "config.json", _set("backbone.pooling", "cls")),
                     "config.json: (sha256 differs|[0-9]+ bytes but MANIFEST.json says)", id="bad-edited-config-pooling"),
        pytest.param(lambda f: edit_json(f, "config.json", _set("backbone.max_length", 7)),
                     "config.json: (sha256 differs|[0-9]+ bytes but MANIFEST.json says)", id="bad-edited-config-max-length"),
        pytest.param(lambda f: (f / "metadata.json").unlink(), "metadata.json: listed in MANIFEST.json but missing",
                     id="bad-missing-metadata"),
        pytest.param(lambda f: (f / "MANIFEST.json").write_text('{"format": "bayes'), "cannot read the manifest",
                     id="bad-truncated-manifest"),
        pytest.param(lambda f: (f / "MANIFEST.json").write_text('{"format": "other", "files": {}}'),
                     "format 'other'", id="bad-foreign-manifest"),
    ],
)
def test_bad_damaged_or_edited_folders_are_refused_naming_the_file(model, saved, damage, message):
    damage(saved)
    with pytest.raises(SerializationError, match=message):
        BayesianModel.from_pretrained(saved, backbone=model.backbone)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param(_set("head.kind", "laplace"), "head.kind", id="bad-meta-head-kind"),
        pytest.param(_set("method.kind", "ensemble"), "method.kind", id="bad-meta-method-kind"),
        pytest.param(_set("head.num_outputs", 0), "head.num_outputs", id="bad-meta-num-outputs"),
        pytest.param(lambda m: m.update(adapted_modules=["layers.0.q_proj"]), "adapted_modules",
                     id="bad-meta-adapted-modules"),
    ],
)
def test_bad_metadata_disagreeing_with_the_config_is_refused_naming_the_field(model, saved, change, field):
    edit_json(saved, "metadata.json", change)
    reseal(saved)
    with pytest.raises(SerializationError, match=f"metadata.json: field '{field}'"):
        BayesianModel.from_pretrained(saved, backbone=model.backbone)


def test_bad_a_nan_tensor_is_refused_on_load_and_on_save(model, saved):
    state = load_file(str(saved / "head.safetensors"))
    name = next(iter(state))
    state[name] = torch.full_like(state[name], float("nan"))
    save_file(state, str(saved / "head.safetensors"), metadata={"format": "pt"})
    reseal(saved)
    with pytest.raises(SerializationError, match=f"head.safetensors: tensors \\['{name}'\\] hold NaN"):
        BayesianModel.from_pretrained(saved, backbone=model.backbone)
    broken = tiny_model(model.backbone.tokenizer)
    with torch.no_grad():
        next(broken.head.parameters()).fill_(float("inf"))
    before = sorted(p.name for p in saved.parent.iterdir())
    with pytest.raises(SerializationError, match="NaN or infinite"):
        broken.save_pretrained(saved)
    assert sorted(p.name for p in saved.parent.iterdir()) == before  # nothing written


def test_an_old_folder_without_a_manifest_loads_with_a_warning_naming_the_conversion(model, saved):
    (saved / "MANIFEST.json").unlink()
    with pytest.warns(LegacyFormatWarning, match="Convert it once with: python -c .*save_pretrained"):
        again = BayesianModel.from_pretrained(saved, backbone=model.backbone)
    assert torch.equal(again.predict(TEXTS).probs, model.predict(TEXTS).probs)
    again.save_pretrained(saved)  # the conversion: a re-save writes the manifest
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BayesianModel.from_pretrained(saved, backbone=model.backbone)


def test_bad_saving_onto_an_existing_file_is_refused(model, tmp_path):
    target = tmp_path / "a-file"
    target.write_text("keep me")
    with pytest.raises(SerializationError, match="is a file"):
        model.save_pretrained(target)
    assert target.read_text() == "keep me"


def test_a_second_save_replaces_the_first_completely(model, saved):
    (saved / "stale.txt").write_text("from the first save")
    model.save_pretrained(saved)
    assert not (saved / "stale.txt").exists()
    assert not [p for p in saved.parent.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize(
    "task",
    [pytest.param("/tmp/escape", id="bad-task-absolute-path"), pytest.param("../../escape", id="bad-task-dotdot"),
     pytest.param("..", id="bad-task-parent")],
)
def test_bad_report_paths_stay_inside_the_output_folder(tmp_path, task):
    from bayeshead.bench.paths import inside, safe_name
    from bayeshead.bench.runner import run_path

    out = tmp_path / "out"
    assert out.resolve() in run_path(out, "m", 0, task).resolve().parents
    assert "/" not in safe_name(task) and safe_name(task) not in (".", "..")
    with pytest.raises(UserInputError, match="outside the output folder"):
        inside(out, out / task / "x.png")
