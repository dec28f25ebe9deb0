"""What a prefix cache is keyed by: the model, the data, the prompt/tokenisation, and each example's tokens.

* :func:`token_key`: a 16-byte digest of one example's real (unpadded) token ids. The states
  entering block s depend on nothing else (positions count real tokens only), so a batch finds an
  example's cached rows by this key whatever the batch's padding side, length or composition.
* :func:`model_fingerprint`: a digest of everything the cached values depend on: the model class,
  its config, and the bytes of every parameter and buffer of the modules that compute them (the
  embedding and the frozen bottom blocks; for k = 0 the whole base model).
* :func:`data_fingerprint`: a digest of the texts (and second texts of pairs).
* :func:`prompt_fingerprint`: the tokenisation settings (tokenizer, max_length, padding side, pair
  template, pooling) in words, plus a digest of every example's token ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["token_key", "model_fingerprint", "data_fingerprint", "prompt_fingerprint"]


def token_key(ids: torch.Tensor) -> bytes:
    """16-byte blake2b digest of a 1-D tensor of token ids (as int64)."""
    array = ids.detach().to("cpu", torch.int64).contiguous().numpy()
    return hashlib.blake2b(array.tobytes(), digest_size=16).digest()


def _tensor_bytes(tensor: torch.Tensor) -> memoryview:
    tensor = tensor.detach().to("cpu").contiguous()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.view(torch.int16)
    return memoryview(tensor.numpy()).cast("B")


def model_fingerprint(name: str, config: Any, modules: Iterable[tuple[str, nn.Module]]) -> str:
    """Hex digest of the model name, class and config and of the named modules' parameters and buffers."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(name.encode())
    to_json = getattr(config, "to_json_string", None)
    digest.update((to_json(use_diff=False) if callable(to_json) else repr(config)).encode())
    for prefix, module in modules:
        for tensor_name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            digest.update(f"{prefix}.{tensor_name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            digest.update(_tensor_bytes(tensor))
    return digest.hexdigest()


def data_fingerprint(texts: Sequence[str], text_pair: Sequence[str] | None = None) -> str:
    """Hex digest of the texts (and their second texts)."""
    digest = hashlib.blake2b(digest_size=20)
    for column in (texts, text_pair or ()):
        digest.update(f"{len(column)}\0".encode())
        for text in column:
            digest.update(text.encode("utf-8", "surrogatepass"))
            digest.update(b"\0")
    return digest.hexdigest()


def prompt_fingerprint(settings: dict[str, Any], keys: np.ndarray) -> str:
    """The tokenisation settings in words and a digest of all examples' token keys (N, 16)."""
    tokens = hashlib.blake2b(np.ascontiguousarray(keys).tobytes(), digest_size=8).hexdigest()
    words = " ".join(f"{name}={settings[name]!r}" for name in sorted(settings))
    return f"{words} tokens={tokens}"
