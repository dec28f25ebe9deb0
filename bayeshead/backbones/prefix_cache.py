"""Cached frozen layers: run only the adapted top k blocks of a decoder, from cached prefix states.

With adapters on the top k of n blocks only (``adapter.top_layers=k``), blocks 0 .. n-k-1 compute
the same states for every method, seed and epoch. With ``backbone.cache_prefix=true`` the backbone
computes once per example the hidden states entering block s = n-k (for its real tokens, with their
position ids), and every later :meth:`~bayeshead.backbones.huggingface.HuggingFaceBackbone.features`
call runs only blocks s .. n-1 and the final norm on them
(:func:`~bayeshead.backbones.block_view.block_view` with ``inputs_embeds``), then pools: training,
validation, prediction, MC-dropout passes, BLoB samples and ensemble members all go through it.
k = 0 (no adapter) caches the pooled features themselves: the frozen-backbone last-layer setting.

Where the states come from, per example, found by the digest of its real token ids:

1. a disk cache of a data set (:meth:`PrefixCache.attach`; the trainer attaches its training and
   validation sets): one memory-mapped folder per (model, data, prompt/tokenisation, k) under
   ``backbone.cache_dir`` (default ``$BAYESHEAD_CACHE/prefix`` or ``~/.cache/bayeshead/prefix``),
   reused across methods, seeds and processes;
2. otherwise, computed on the spot by the bottom blocks (no gradient) and kept in memory (bounded,
   least recently used dropped first), so the T passes of a sampling method pay for it once.

The bottom blocks must be deterministic (no dropout there): they are evaluated once, in eval mode.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from bayeshead.backbones.block_view import block_view, decoder_base
from bayeshead.backbones.pooling import pooled_features
from bayeshead.backbones.prefix_fingerprint import (
    data_fingerprint,
    model_fingerprint,
    prompt_fingerprint,
    token_key,
)
from bayeshead.backbones.prefix_store import PrefixCacheError, PrefixStore, open_store, write_store
from bayeshead.errors import UserInputError

if TYPE_CHECKING:
    from bayeshead.backbones.huggingface import HuggingFaceBackbone

__all__ = [
    "PrefixCache",
    "PrefixStats",
    "adapted_top_blocks",
    "active_prefix_cache",
    "enable_prefix_cache",
    "cache_datasets",
    "default_cache_dir",
]

logger = logging.getLogger("bayeshead.prefix_cache")

#: default bound on the in-memory states of examples that are in no disk cache (bytes).
MEMORY_BUDGET = 2 << 30


def default_cache_dir() -> Path:
    """``$BAYESHEAD_CACHE/prefix``, else ``~/.cache/bayeshead/prefix``."""
    from bayeshead.backbones.gguf_cache import cache_root

    return cache_root() / "prefix"


def _trainable_or_adapted(module: nn.Module) -> bool:
    from bayeshead.adapters import adapter_modules

    return bool(adapter_modules(module)) or any(p.requires_grad for p in module.parameters())


def adapted_top_blocks(model: nn.Module) -> int:
    """k: the number of blocks from the lowest one holding an adapter or a trainable parameter to
    the top (0 when no block does). Refuses a trainable or adapted embedding, which would make
    every block's input depend on training."""
    base = decoder_base(model)
    if _trainable_or_adapted(base.embed_tokens):
        raise UserInputError(
            "backbone.cache_prefix: the token embedding is trainable or adapted, so no block's input can be "
            "cached; adapt only transformer blocks (adapter.top_layers=k) or set backbone.cache_prefix=false"
        )
    n = len(base.layers)
    adapted = [i for i, block in enumerate(base.layers) if _trainable_or_adapted(block)]
    return n - min(adapted) if adapted else 0


def _check_deterministic(base: nn.Module, start: int) -> None:
    """Refuse dropout inside the cached blocks: their states are computed once."""
    noisy = [
        f"layers.{i}"
        for i, block in enumerate(list(base.layers)[:start])
        if any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in block.modules())
    ]
    rate = float(getattr(base.config, "attention_dropout", 0.0) or 0.0)
    if noisy or (start > 0 and rate > 0):
        where = f"dropout modules in {noisy[:5]}" if noisy else f"config.attention_dropout={rate}"
        raise UserInputError(
            f"backbone.cache_prefix: the cached bottom blocks have {where}, but their states are computed "
            "once without dropout; set the backbone's dropout in those blocks to 0 or backbone.cache_prefix=false"
        )


@dataclass
class PrefixStats:
    """Where the states of the examples seen so far came from (counts of examples)."""

    disk: int = 0  #: found in an attached disk cache
    memory: int = 0  #: found among the states kept in memory
    computed: int = 0  #: run through the bottom blocks (for a disk cache or on the spot)
    written: list[str] = field(default_factory=list)


class PrefixCache:
    """The prefix-state cache of one backbone (see the module docstring).

    ``PrefixCache(backbone)`` reads k from where the adapters are; :meth:`features` is the cached
    counterpart of the backbone's full forward; :meth:`attach` adds a data set's disk cache."""

    def __init__(
        self,
        backbone: HuggingFaceBackbone,
        directory: str | Path | None = None,
        memory_budget: int = MEMORY_BUDGET,
    ) -> None:
        self.backbone = backbone
        self.directory = Path(directory) if directory is not None else None
        self.memory_budget = int(memory_budget)
        self.base = decoder_base(backbone.model)
        self.n_blocks = len(self.base.layers)
        self.stats = PrefixStats()
        self._setup(adapted_top_blocks(backbone.model))

    def _setup(self, k: int) -> None:
        self.k = k
        self.start = self.n_blocks - k
        _check_deterministic(self.base, self.start)
        self._bottom = block_view(self.base, 0, self.start, final_norm=False) if k else None
        self._top = block_view(self.base, self.start, self.n_blocks) if k else None
        self._index: dict[bytes, tuple[PrefixStore, int]] = {}
        self._stores: dict[Path, PrefixStore] = {}
        self._memory: OrderedDict[bytes, tuple[Tensor, Tensor]] = OrderedDict()
        self._memory_bytes = 0
        self._model_fingerprint: str | None = None

    def sync(self) -> None:
        """Follow a change of where the adapters are (a new k drops every cached state)."""
        k = adapted_top_blocks(self.backbone.model)
        if k != self.k:
            logger.info("prefix cache: the adapted blocks changed (k %d -> %d); cached states dropped", self.k, k)
            self._setup(k)

    # -- fingerprints ---------------------------------------------------------------------------
    @property
    def model_fingerprint(self) -> str:
        """Digest of the model and of the weights the cached values depend on (computed once)."""
        if self._model_fingerprint is None:
            if self.k == 0:
                modules = [("base", self.base)]
            else:
                modules = [("embed_tokens", self.base.embed_tokens)]
                modules += [(f"layers.{i}", self.base.layers[i]) for i in range(self.start)]
            name = str(getattr(self.backbone.config, "name_or_path", ""))
            self._model_fingerprint = model_fingerprint(name, self.base.config, modules)
        return self._model_fingerprint

    def _prompt_settings(self) -> dict[str, Any]:
        backbone = self.backbone
        tokenizer = backbone.tokenizer
        return {
            "tokenizer": f"{type(tokenizer).__name__}/{len(tokenizer)}",
            "max_length": backbone.max_length,
            "padding_side": backbone.padding_side or getattr(tokenizer, "padding_side", None),
            "pair_template": backbone.pair_template,
            "pooling": backbone.pooling,
        }

    def fingerprints(self, texts: Sequence[str], text_pair: Sequence[str] | None, keys: np.ndarray) -> dict[str, Any]:
        """What a cache of ``texts`` must have been written for: model, data, prompt, k."""
        return {
            "model": self.model_fingerprint,
            "data": data_fingerprint(texts, text_pair),
            "prompt": prompt_fingerprint(self._prompt_settings(), keys),
            "k": self.k,
            "blocks": self.n_blocks,
        }

    # -- computing states --------------------------------------------------------------------------
    @torch.no_grad()
    def _compute(self, batch: Mapping[str, Tensor]) -> list[tuple[Tensor, Tensor]]:
        """(states, positions) per example of a tokenized batch, from the bottom blocks (k >= 1)
        or the full forward (k = 0: one row, the pooled features), on the CPU."""
        flags = [(m, m.training) for m in self.base.modules()]
        self.base.eval()
        try:
            if self.k == 0:
                feats = self.backbone.full_features(batch).cpu()
                return [(feats[b : b + 1], torch.zeros(1, dtype=torch.int64)) for b in range(len(feats))]
            device = self.backbone.device
            mask_d = batch["attention_mask"].to(device)
            positions = _positions(batch, mask_d)
            hidden = self._bottom(
                input_ids=batch["input_ids"].to(device),
                attention_mask=mask_d,
                position_ids=positions,
                use_cache=False,
                return_dict=True,
            ).last_hidden_state
        finally:
            for module, flag in flags:
                module.training = flag
        real = mask_d > 0
        return [(hidden[b][real[b]].cpu(), positions[b][real[b]].cpu()) for b in range(len(hidden))]

    def _remember(self, key: bytes, rows: tuple[Tensor, Tensor]) -> None:
        size = rows[0].numel() * rows[0].element_size()
        if size > self.memory_budget:
            return
        self._memory[key] = rows
        self._memory_bytes += size
        while self._memory_bytes > self.memory_budget:
            _, (old, _) = self._memory.popitem(last=False)
            self._memory_bytes -= old.numel() * old.element_size()

    def _lookup(self, keys: list[bytes]) -> list[tuple[Tensor, Tensor] | None]:
        found: list[tuple[Tensor, Tensor] | None] = []
        for key in keys:
            hit = self._index.get(key)
            if hit is not None:
                self.stats.disk += 1
                found.append(hit[0].rows(hit[1]))
            elif key in self._memory:
                self.stats.memory += 1
                self._memory.move_to_end(key)
                found.append(self._memory[key])
            else:
                found.append(None)
        return found

    def _rows(self, batch: Mapping[str, Tensor]) -> list[tuple[Tensor, Tensor]]:
        """Cached (states, positions) of every example of ``batch``, computing the missing ones."""
        ids, mask = batch["input_ids"], batch["attention_mask"]
        keys = [token_key(ids[b][mask[b] > 0]) for b in range(len(ids))]
        found = self._lookup(keys)
        missing = [b for b, rows in enumerate(found) if rows is None]
        if missing:
            index = torch.tensor(missing)
            sub = {name: batch[name][index] for name in ("input_ids", "attention_mask")}
            if "position_ids" in batch:
                sub["position_ids"] = batch["position_ids"][index]
            for b, rows in zip(missing, self._compute(sub), strict=True):
                self.stats.computed += 1
                self._remember(keys[b], rows)
                found[b] = rows
        return found  # type: ignore[return-value]

    # -- the cached forward --------------------------------------------------------------------
    def features(self, batch: Mapping[str, Tensor]) -> Tensor:
        """The backbone's features (B, d) of ``batch``, running only the top k blocks."""
        if self.k == 0:
            self.sync()
            return torch.cat([r[0] for r in self._rows(batch)]).to(self.backbone.device)
        hidden, mask = self.hidden_states(batch)
        return pooled_features(hidden, mask, self.backbone.pooling)

    def hidden_states(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """The last hidden states (B, T, d) of ``batch`` and its attention mask, from the top k ≥ 1
        blocks on the cached states entering them."""
        if self.k == 0:
            raise PrefixCacheError(
                "prefix cache: with no adapted block (k = 0) only the pooled features are cached, not the "
                "hidden state of every token; adapt the top blocks (adapter.top_layers >= 1) or set "
                "backbone.cache_prefix=false"
            )
        self.sync()
        rows = self._rows(batch)
        device = self.backbone.device
        mask = batch["attention_mask"].to(device)
        positions = _positions(batch, mask)
        real = mask > 0
        cached_positions = torch.cat([r[1] for r in rows]).to(device)
        if not torch.equal(cached_positions, positions[real]):
            raise PrefixCacheError(
                "prefix cache: the batch's position ids differ from those the cached states were computed "
                "with; pass batches without custom position_ids (positions count real tokens) or set "
                "backbone.cache_prefix=false"
            )
        first = rows[0][0]
        states = torch.zeros(*mask.shape, first.shape[-1], dtype=first.dtype, device=device)
        states[real] = torch.cat([r[0] for r in rows]).to(device)
        hidden = self._top(
            inputs_embeds=states, attention_mask=mask, position_ids=positions, use_cache=False, return_dict=True
        ).last_hidden_state
        return hidden, mask

    # -- disk caches -----------------------------------------------------------------------------
    def _tokenized(self, texts: Sequence[str], text_pair: Sequence[str] | None, batch_size: int):
        for lo in range(0, len(texts), batch_size):
            pair = None if text_pair is None else list(text_pair[lo : lo + batch_size])
            yield self.backbone.tokenize(list(texts[lo : lo + batch_size]), pair)

    def attach(
        self,
        texts: Sequence[str],
        text_pair: Sequence[str] | None = None,
        *,
        folder: str | Path | None = None,
        batch_size: int = 32,
    ) -> PrefixStore:
        """Use the disk cache of ``texts`` (and ``text_pair``): open it when it exists (refusing one
        written for another model, data, prompt or k), else compute and write it. ``folder`` defaults
        to a folder named by the fingerprints under the cache directory; a corrupt folder there is
        rebuilt, a corrupt or foreign ``folder`` given explicitly is refused."""
        self.sync()
        batches = list(self._tokenized(texts, text_pair, batch_size))
        keys = np.array(
            [
                np.frombuffer(token_key(b["input_ids"][i][b["attention_mask"][i] > 0]), dtype=np.uint8)
                for b in batches
                for i in range(len(b["input_ids"]))
            ],
            dtype=np.uint8,
        ).reshape(-1, 16)
        expected = self.fingerprints(texts, text_pair, keys)
        explicit = folder is not None
        if folder is None:
            root = self.directory or default_cache_dir()
            folder = root / _folder_name(expected)
        folder = Path(folder)
        if folder in self._stores:
            return self._stores[folder]
        store = None
        if folder.exists():
            try:
                store = open_store(folder, expected)
            except PrefixCacheError as err:
                if explicit or type(err) is not PrefixCacheError:
                    raise
                logger.warning("%s; rebuilding it", err)
        if store is None:
            store = self._build(folder, expected, batches, keys)
        self._stores[folder] = store
        for i, key in enumerate(store.keys):
            self._index[key.tobytes()] = (store, i)
        return store

    def _build(self, folder: Path, expected: dict[str, Any], batches: list, keys: np.ndarray) -> PrefixStore:
        rows = [r for batch in batches for r in self._compute(batch)]
        self.stats.computed += len(rows)
        lengths = torch.tensor([0] + [len(r[0]) for r in rows])
        width = self.backbone.feature_dim
        dtype = rows[0][0].dtype if rows else torch.float32
        states = torch.cat([r[0] for r in rows]) if rows else torch.zeros(0, width, dtype=dtype)
        positions = torch.cat([r[1] for r in rows]) if rows else torch.zeros(0, dtype=torch.int64)
        write_store(folder, expected, states, positions, lengths.cumsum(0), keys)
        self.stats.written.append(str(folder))
        logger.info("prefix cache: wrote %d examples (k=%d) to %s", len(rows), self.k, folder)
        return open_store(folder, expected)


def _positions(batch: Mapping[str, Tensor], mask: Tensor) -> Tensor:
    """The batch's position ids, or (as the full forward computes them) real tokens counted from 0."""
    if "position_ids" in batch:
        return batch["position_ids"].to(mask.device)
    return (mask.long().cumsum(-1) - 1).clamp_min(0)


def _folder_name(fingerprints: Mapping[str, Any]) -> str:
    import hashlib

    prompt = hashlib.blake2b(str(fingerprints["prompt"]).encode(), digest_size=8).hexdigest()
    return f"{fingerprints['model'][:16]}-{fingerprints['data'][:16]}-{prompt}-k{fingerprints['k']}"


def active_prefix_cache(backbone: HuggingFaceBackbone) -> PrefixCache | None:
    """The backbone's :class:`PrefixCache` when ``backbone.config.cache_prefix`` is on (created on
    first use), else None."""
    config = getattr(backbone, "config", None)
    if not getattr(config, "cache_prefix", False):
        return None
    cache = backbone.__dict__.get("_prefix_cache")
    if cache is None:
        cache = PrefixCache(backbone, directory=getattr(config, "cache_dir", None))
        backbone.__dict__["_prefix_cache"] = cache
    return cache


def enable_prefix_cache(backbone: HuggingFaceBackbone, directory: str | Path | None = None) -> PrefixCache:
    """Turn on ``cache_prefix`` for ``backbone`` (disk caches under ``directory``); returns its cache."""
    backbone.config.cache_prefix = True
    if directory is not None:
        backbone.config.cache_dir = str(directory)
    backbone.__dict__.pop("_prefix_cache", None)
    cache = active_prefix_cache(backbone)
    assert cache is not None
    return cache


def cache_datasets(backbone: Any, *datasets: Any) -> None:
    """Attach the disk cache of each :class:`~bayeshead.data.TextDataset` (None skipped) when the
    backbone caches prefixes; a no-op otherwise (the trainer calls it before its loop)."""
    cache = active_prefix_cache(backbone) if hasattr(backbone, "tokenizer") else None
    if cache is None:
        return
    for data in datasets:
        if data is not None:
            texts = data.flat_texts if getattr(data, "is_multiple_choice", False) else data.texts
            cache.attach(texts, getattr(data, "text_pair", None))
