"""One trainer for any adapter x head x optimizer; alternating (PoLAR-VBLL) or joint updates.

Alternating recipe, per global mini-batch (ARCHITECTURE.md, "Training"):

1. one backbone forward ``φ = f(x)`` (with autograd when adapters are trainable);
2. head block: ``k = training.head_steps`` Adam steps (no weight decay) on the head's loss at the
   detached features ``φ.detach()``; the adapters receive no gradient;
3. adapter block: the head frozen, one step of the configured optimizer (Riemannian Adam or
   landing for the Stiefel factors, AdamW for Θ and other Euclidean tensors) on the same loss,
   back-propagated through the backbone features of step 1.

``mode="joint"`` takes one step of the configured optimizer over head and adapters together
(the ablation). After the loop: the best parameters by validation NLL are restored when early
stopping is on, then the head's post-hoc fit runs (Laplace, temperature), then the optional +LA
refinement of a VBLL head.

Checkpoints (``checkpoint_dir`` with ``training.checkpoint_every``) hold the trainable parameters
and head buffers, the optimizer states, the RNG state, the early-stopping state and the log;
the data order of epoch e is a permutation drawn from ``seed`` and e alone, so a resumed run skips
the batches already seen and ends with exactly the parameters of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from bayeshead.errors import UserInputError
from bayeshead.seeding import seed_everything
from bayeshead.training.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from bayeshead.training.diagnostics import adapter_diagnostics
from bayeshead.training.distributed import DistContext, init_distributed, local_slice
from bayeshead.training.early_stopping import EarlyStopping
from bayeshead.training.evaluate import evaluate_nll
from bayeshead.training.hooks import StepInfo, TrainingHooks
from bayeshead.training.optim import build_head_optimizer, build_optimizer
from bayeshead.training.posthoc import run_posthoc
from bayeshead.training.schedule import apply_lr, lr_multiplier

if TYPE_CHECKING:
    from bayeshead.data import TextDataset
    from bayeshead.model import BayesianModel

__all__ = ["Trainer", "data_fingerprint"]

logger = logging.getLogger("bayeshead.training")

#: training options that may differ between a run and its resumption (they change no number).
_RESUMABLE_CHANGES = {"progress", "checkpoint_every", "keep_checkpoints", "log_every"}


def data_fingerprint(data: TextDataset) -> str:
    """sha256 over texts, second texts and labels: a resumed run must see the same data.

    Class labels enter as int64 bytes; regression targets as their exact bytes with dtype and
    shape (a changed digit in the 7th decimal changes the fingerprint); pairs add every second
    text after a marker; an option group enters as its options, each ended by a unit separator,
    then a group separator. Single-text classification data hash as they always did, so existing
    checkpoints stay resumable."""
    digest = hashlib.sha256()
    for text in data.texts:
        if isinstance(text, tuple):  # an option group: its options, then a group marker
            for option in text:
                digest.update(option.encode("utf-8", "surrogatepass"))
                digest.update(b"\x1f")
            digest.update(b"\x1e")
            continue
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    if getattr(data, "target_type", "classification") == "regression":
        labels = data.labels.detach().cpu().contiguous()
        digest.update(f"regression:{labels.dtype}:{tuple(labels.shape)}".encode())
        digest.update(labels.numpy().tobytes())
    else:
        digest.update(data.labels.to(torch.int64).numpy().tobytes())
    if getattr(data, "text_pair", None) is not None:
        digest.update(b"\0text_pair\0")
        for text in data.text_pair:
            digest.update(text.encode("utf-8", "surrogatepass"))
            digest.update(b"\0")
    return digest.hexdigest()


class Trainer:
    """Train a :class:`~bayeshead.model.BayesianModel` in place.

    ``Trainer(model, checkpoint_dir="runs/x", resume=True).fit(train, val)`` continues from the
    newest valid checkpoint in ``runs/x`` if there is one (a corrupt one is refused with
    :class:`~bayeshead.training.checkpoint.CheckpointError`). Under ``torchrun`` the process group
    is joined automatically; only rank 0 writes checkpoints and shows progress.
    """

    def __init__(
        self,
        model: BayesianModel,
        *,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        dist: DistContext | None = None,
        on_step: Callable[[int, dict[str, float]], None] | None = None,
        hooks: TrainingHooks | None = None,
    ) -> None:
        self.model = model
        self.cfg = model.config.training
        self.ctx = dist if dist is not None else init_distributed()
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        if self.cfg.checkpoint_every is not None and self.checkpoint_dir is None:
            raise UserInputError(
                f"training.checkpoint_every={self.cfg.checkpoint_every} but no checkpoint directory was "
                "given; pass checkpoint_dir=... (CLI: --checkpoint-dir) or unset checkpoint_every"
            )
        if resume and self.checkpoint_dir is None:
            raise UserInputError("resume=True needs checkpoint_dir: the directory the interrupted run wrote to")
        self.resume = resume
        self.on_step = on_step
        self.hooks = hooks or TrainingHooks()
        if not self.hooks.checkpointable and self.cfg.checkpoint_every is not None:
            raise UserInputError(
                "this method keeps training state that checkpoints do not hold, so a resumed run would "
                "not be exact; unset training.checkpoint_every (and --checkpoint-dir)"
            )
        excluded = {id(p) for p in self.hooks.exclude}
        self.head_params = [p for p in model.head.parameters() if p.requires_grad and id(p) not in excluded]
        self.body_params = [p for p in model.backbone.parameters() if p.requires_grad and id(p) not in excluded]
        self.history: list[dict[str, float]] = []
        self.posthoc: dict[str, float] = {}
        self.step = 0
        self._build_optimizers()

    # -- set-up ------------------------------------------------------------------------------
    def _build_optimizers(self) -> None:
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        if self.cfg.mode == "joint":
            joint = build_optimizer(self.model, exclude=self.hooks.exclude)
            if joint is None:
                raise UserInputError("nothing to train: the head and backbone have no trainable parameters")
            self.optimizers["joint"] = joint
            return
        if self.head_params:
            self.optimizers["head"] = build_head_optimizer(self.model, self.head_params)
        if self.body_params:
            body = build_optimizer(self.model, self.model.backbone, exclude=self.hooks.exclude)
            assert body is not None
            self.optimizers["adapters"] = body
        if not self.optimizers:
            raise UserInputError("nothing to train: the head and backbone have no trainable parameters")

    def _trainable_state(self) -> dict[str, Tensor]:
        """Trainable parameters and every head buffer (posterior factors, noise, counters)."""
        state = {name: p for name, p in self.model.named_parameters() if p.requires_grad}
        state.update({f"head.{name}": b for name, b in self.model.head.named_buffers()})
        return state

    @torch.no_grad()
    def _load_trainable_state(self, state: dict[str, Tensor]) -> None:
        own = self._trainable_state()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise CheckpointError(
                f"checkpoint does not match this model: missing {missing[:5]}, unexpected {unexpected[:5]}; "
                "it was written for a different adapter/head configuration"
            )
        for name, value in state.items():
            if own[name].shape != value.shape:
                raise CheckpointError(
                    f"checkpoint tensor {name!r} has shape {tuple(value.shape)}, the model expects {tuple(own[name].shape)}"
                )
            own[name].copy_(value)

    def _set_modes(self) -> None:
        self.model.train()
        if not self.body_params:
            self.model.backbone.eval()  # frozen backbone: no dropout noise in its features

    # -- one mini-batch ------------------------------------------------------------------------
    def _zero_fill(self, params: list[nn.Parameter]) -> None:
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)

    def _finish_block(self, params: list[nn.Parameter], optimizer: torch.optim.Optimizer) -> None:
        """All-reduce (DDP), clip, step."""
        self._zero_fill(params)
        self.ctx.all_reduce_mean_(p.grad for p in params)
        if self.cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        optimizer.step()

    def _block(
        self,
        params: list[nn.Parameter],
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[[], Any] | None,
        weight: float,
    ) -> Any:
        optimizer.zero_grad(set_to_none=True)
        terms = None
        if loss_fn is not None:
            terms = loss_fn()
            (terms.total * weight).backward()
        self._finish_block(params, optimizer)
        return terms

    def head_block(self, features: Tensor | None, labels: Tensor, weight: float = 1.0) -> Any:
        """``training.head_steps`` Adam steps of the head on detached ``features``; returns the
        last :class:`~bayeshead.types.LossTerms` (None for an empty local batch under DDP)."""
        terms = None
        detached = None if features is None else features.detach()
        for _ in range(self.cfg.head_steps):
            loss = None if detached is None else (lambda: self.model.head.loss(detached, labels))
            terms = self._block(self.head_params, self.optimizers["head"], loss, weight)
        return terms

    def _with_regularizer(self, loss_fn: Callable[[], Any] | None) -> Callable[[], Any] | None:
        """The head's loss plus the method's regularizer terms (``hooks.regularizer``)."""
        reg = self.hooks.regularizer
        if loss_fn is None or reg is None:
            return loss_fn
        info = self._step_info

        def total() -> Any:
            terms = loss_fn()
            for name, value in reg(info).items():
                terms.parts[name] = value.detach()
                terms.total = terms.total + value.to(terms.total.dtype)
            return terms

        return total

    def adapter_block(self, features: Tensor | None, labels: Tensor, weight: float = 1.0) -> Any:
        """One step of the configured optimizer on the backbone's trainable parameters, the head
        frozen, back-propagating the head's loss (+ the method's regularizer) through ``features``."""
        for p in self.head_params:
            p.requires_grad_(False)
        try:
            loss = None if features is None else (lambda: self.model.head.loss(features, labels))
            return self._block(self.body_params, self.optimizers["adapters"], self._with_regularizer(loss), weight)
        finally:
            for p in self.head_params:
                p.requires_grad_(True)

    def _train_step(
        self, texts: list[str], labels: Tensor, global_size: int, text_pair: list[str] | None = None
    ) -> dict[str, float]:
        model, ctx = self.model, self.ctx
        weight = len(texts) / global_size * ctx.world_size  # equal-weight examples across ranks
        features = None
        context = self.hooks.train_context() if self.hooks.train_context is not None else contextlib.nullcontext()
        with context:
            if texts:
                with torch.set_grad_enabled(bool(self.body_params)):
                    features = model.features(texts, text_pair)
                labels = labels.to(features.device)
            if self.cfg.mode == "joint":
                loss = None if features is None else (lambda: model.head.loss(features, labels))
                terms = self._block(
                    self.head_params + self.body_params, self.optimizers["joint"], self._with_regularizer(loss), weight
                )
            else:
                terms = self.head_block(features, labels, weight) if "head" in self.optimizers else None
                if "adapters" in self.optimizers:
                    adapter_terms = self.adapter_block(features, labels, weight)
                    terms = adapter_terms if adapter_terms is not None else terms
        row = self._reduce_terms(terms, len(texts), global_size)
        if self.hooks.after_step is not None:
            row.update(self.hooks.after_step(self._step_info))
        return row

    def _reduce_terms(self, terms: Any, local: int, global_size: int) -> dict[str, float]:
        """Loss parts as global-batch means (sample-weighted across ranks)."""
        floats = terms.as_floats() if terms is not None else {}
        if not self.ctx.enabled:
            return floats
        if not self._term_names:
            self._term_names = sorted(floats)  # the first batch is non-empty on every rank
        sums = self.ctx.all_reduce_sum([floats.get(n, 0.0) * local for n in self._term_names])
        return {n: s / global_size for n, s in zip(self._term_names, sums, strict=True)}

    # -- the loop --------------------------------------------------------------------------------
    def fit(self, train: TextDataset, val: TextDataset | None = None) -> list[dict[str, float]]:
        """Train on ``train`` (validation NLL on ``val``), run the post-hoc stage, return the log:
        one row per step (loss parts, lr; ``val_nll`` where evaluated; adapter diagnostics every
        ``log_every`` steps)."""
        model, cfg, ctx = self.model, self.cfg, self.ctx
        self._check_data(train, "training")
        if val is not None:
            self._check_data(val, "validation")
        # the fingerprint is of the data as given; the steps and the post-hoc fit see standardised targets
        fingerprint = data_fingerprint(train)
        fit_train, fit_val = self._standardise(train, val)
        from bayeshead.backbones.prefix_cache import cache_datasets

        cache_datasets(model.backbone, train, val)  # backbone.cache_prefix: each split's prefix states, once
        if model.head.config.n_train is None:
            model.head.set_n_train(len(train))
        steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
        total = steps_per_epoch * cfg.epochs
        if cfg.max_steps is not None:
            total = min(total, cfg.max_steps)
        if cfg.early_stopping_patience is not None and val is None:
            raise UserInputError("training.early_stopping_patience is set but no validation data was given")
        early = EarlyStopping(cfg.early_stopping_patience)
        if cfg.batch_size < ctx.world_size:
            raise UserInputError(
                f"training.batch_size={cfg.batch_size} is the global batch and must be at least the "
                f"number of processes ({ctx.world_size})"
            )
        seed_everything(cfg.seed)  # training.seed: Python random, NumPy and torch
        self.step = 0
        stopped = False
        if self.resume:
            stopped = self._restore(fingerprint, early)
        self._term_names: list[str] = []
        bar = tqdm(
            total=total,
            initial=self.step,
            desc=f"train {model.head.config.kind}",
            disable=(None if cfg.progress else True) if ctx.is_main else True,
            leave=False,
        )
        self._set_modes()
        while self.step < total and not stopped:
            epoch, batch_index = divmod(self.step, steps_per_epoch)
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch))
            chunk = order[batch_index * cfg.batch_size : (batch_index + 1) * cfg.batch_size]
            mine = local_slice(chunk, ctx).tolist()
            multiplier = lr_multiplier(self.step, total, cfg.warmup_steps, cfg.schedule)
            for optimizer in self.optimizers.values():
                apply_lr(optimizer, multiplier)
            self._step_info = StepInfo(self.step, total, batch_index, steps_per_epoch, multiplier)
            pairs = None if fit_train.text_pair is None else [fit_train.text_pair[i] for i in mine]
            row = self._train_step([fit_train.texts[i] for i in mine], fit_train.labels[mine], len(chunk), pairs)
            self.step += 1
            row = {"step": float(self.step), "epoch": float(epoch), "lr_multiplier": multiplier, **row}
            if self.step % cfg.log_every == 0 or self.step == total:
                row.update({f"diag/{k}": v for k, v in adapter_diagnostics(model.backbone).items()})
                if ctx.is_main:
                    logger.info("step %d/%d: %s", self.step, total, _summary(row))
            if val is not None and self._evaluation_due(steps_per_epoch, total):
                row["val_nll"] = evaluate_nll(model, val, ctx, seed=cfg.seed, predict=self.hooks.validation_predict)
                stopped = early.update(row["val_nll"], self._trainable_state())
                self._set_modes()
            self.history.append(row)
            bar.update(1)
            bar.set_postfix(loss=f"{row.get('total', float('nan')):.4f}")
            if self.on_step is not None:
                self.on_step(self.step, row)
            if self._checkpoint_due(total, stopped):
                self._save(fingerprint, early, stopped)
        bar.close()
        if early.best_state is not None:
            self._load_trainable_state(early.best_state)
        model.eval()
        self.posthoc = run_posthoc(model, fit_train, fit_val)
        if self.posthoc:
            logger.info("post-hoc: %s", self.posthoc)
        return self.history

    def _evaluation_due(self, steps_per_epoch: int, total: int) -> bool:
        if self.step == total:
            return True
        if self.cfg.eval_every is not None:
            return self.step % self.cfg.eval_every == 0
        return self.step % steps_per_epoch == 0

    def _checkpoint_due(self, total: int, stopped: bool) -> bool:
        every = self.cfg.checkpoint_every
        if every is None or self.checkpoint_dir is None:
            return False
        return self.step % every == 0 or self.step == total or stopped

    def _standardise(self, train: TextDataset, val: TextDataset | None) -> tuple[TextDataset, TextDataset | None]:
        """Regression with ``training.standardize_targets``: fit the model's
        :class:`~bayeshead.data.scaling.TargetScaler` on ``train`` (z = (y − m)/s per output) and
        return both splits with standardised targets; otherwise the splits as given (and no
        scaler). Validation NLL is scored on the original ``val`` with predictions mapped back."""
        model = self.model
        if model.head.task_type != "regression" or not self.cfg.standardize_targets:
            model.target_scaler = None
            return train, val
        from bayeshead.data.scaling import TargetScaler

        scaler = TargetScaler.fit(train.labels)
        model.target_scaler = scaler

        def scaled(data: TextDataset) -> TextDataset:
            return dataclasses.replace(data, labels=scaler.transform(data.labels.double()).to(data.labels.dtype))

        return scaled(train), None if val is None else scaled(val)

    def _check_data(self, data: TextDataset, what: str) -> None:
        if len(data) == 0:
            raise UserInputError(f"{what} data is empty")
        head = self.model.head
        data_type = getattr(data, "target_type", "classification")
        if head.task_type != data_type:
            fix = {
                "regression": "use a regression head (gaussian, laplace_regression, variance_scaling, vbll_regression)",
                "multiple_choice": "use a per-option head (deterministic_options, vbll_options)",
            }.get(data_type, "use a classification head (deterministic, vbll_classification, laplace, ...)")
            raise UserInputError(
                f"{what} data ({getattr(data, 'name', 'data')}) has {data_type} targets but head.kind="
                f"{head.config.kind!r} is a {head.task_type} head; {fix}, or load the data with "
                f"target_type={head.task_type!r} (CLI: --target-type {head.task_type})"
            )
        if head.task_type == "regression":
            if data.num_outputs != head.num_outputs:
                raise UserInputError(
                    f"{what} data has {data.num_outputs} target column(s) but the head predicts "
                    f"{head.num_outputs}; build the model with num_outputs=data.num_outputs"
                )
            return
        if head.task_type == "multiple_choice":
            widest = max(len(group) for group in data.texts)
            if widest > head.num_outputs:
                raise UserInputError(
                    f"{what} data has a question with {widest} options but the head scores at most "
                    f"{head.num_outputs}; build the model with num_outputs=data.num_classes"
                )
            return
        if self.model.head.task_type == "classification":
            top = int(data.labels.max())
            if top >= self.model.head.num_outputs:
                raise UserInputError(
                    f"{what} data has label {top} but the head predicts {self.model.head.num_outputs} classes; "
                    "build the model with num_outputs=data.num_classes"
                )

    # -- checkpoints ------------------------------------------------------------------------------
    def _config_for_resume(self) -> dict[str, Any]:
        raw = self.model.config.model_dump(mode="json")
        for key in _RESUMABLE_CHANGES:
            raw["training"].pop(key, None)
        return raw

    def _save(self, fingerprint: str, early: EarlyStopping, stopped: bool) -> None:
        if self.ctx.is_main:
            assert self.checkpoint_dir is not None
            state = {
                "kind": "bayeshead-trainer",
                "step": self.step,
                "stopped": stopped,
                "config": self._config_for_resume(),
                "data_fingerprint": fingerprint,
                "n_train": self.model.head.config.n_train,
                "model": {k: v.detach() for k, v in self._trainable_state().items()},
                "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
                "rng": torch.get_rng_state(),
                "early_stopping": early.state_dict(),
                "history": self.history,
            }
            save_checkpoint(self.checkpoint_dir, self.step, state, keep=self.cfg.keep_checkpoints)
        self.ctx.barrier()

    def _restore(self, fingerprint: str, early: EarlyStopping) -> bool:
        assert self.checkpoint_dir is not None
        if latest_checkpoint(self.checkpoint_dir) is None:
            logger.info("no checkpoint in %s yet: starting from scratch", self.checkpoint_dir)
            return False
        step, state = load_checkpoint(self.checkpoint_dir)
        where = str(self.checkpoint_dir)
        if state.get("kind") != "bayeshead-trainer":
            raise CheckpointError(f"{where}: not a bayeshead trainer checkpoint (kind={state.get('kind')!r})")
        if state["data_fingerprint"] != fingerprint:
            raise CheckpointError(
                f"{where}: the checkpoint was written for different training data (texts/labels differ); "
                "resume with the same data or start a new run in another directory"
            )
        ours = self._config_for_resume()
        if state["config"] != ours:
            theirs = state["config"]
            diff = sorted(
                f"{section}.{key}"
                for section in ours
                if isinstance(ours[section], dict) and isinstance(theirs.get(section), dict)
                for key in set(ours[section]) | set(theirs[section])
                if ours[section].get(key) != theirs[section].get(key)
            ) or sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
            raise CheckpointError(
                f"{where}: the checkpoint was written with a different config (differs in: {', '.join(diff)}); "
                "resume with the original config or start a new run in another directory"
            )
        if state["n_train"] is not None:
            self.model.head.set_n_train(int(state["n_train"]))
        self._load_trainable_state(state["model"])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
            _match_parameter_layout(opt)
        torch.set_rng_state(state["rng"])
        early.load_state_dict(state["early_stopping"])
        self.history = list(state["history"])
        self.step = int(step)
        logger.info("resumed from %s at step %d", where, self.step)
        return bool(state["stopped"])


def _summary(row: dict[str, float]) -> str:
    """Loss parts, lr factor, val NLL, and the worst orthogonality error / mean stable rank."""
    parts = [f"{k}={v:.4g}" for k, v in row.items() if not k.startswith("diag/") and k not in ("step", "epoch")]
    orth = [v for k, v in row.items() if k.startswith("diag/") and "/orth_" in k]
    ranks = [v for k, v in row.items() if k.endswith("/stable_rank")]
    if orth:
        parts.append(f"max_orth_error={max(orth):.2e}")
    if ranks:
        parts.append(f"mean_stable_rank={sum(ranks) / len(ranks):.3g}")
    return " ".join(parts)


@torch.no_grad()
def _match_parameter_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give restored moment buffers their parameter's memory layout (strides).

    Optimizers create moments with ``zeros_like(param)``, which keeps a transposed parameter's
    strides; checkpoints store tensors contiguously. Matrix products (the Stiefel retraction and
    vector transport) may round differently for the two layouts, so without this a resumed run
    would drift from an uninterrupted one by a few ulps."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            for key, value in state.items():
                if isinstance(value, Tensor) and value.shape == param.shape and value.stride() != param.stride():
                    state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)

