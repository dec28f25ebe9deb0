"""The trainer: alternating blocks touch only their own parameters, joint mode, schedules,
early stopping, post-hoc stage, checkpoint resume equal to an uninterrupted run."""

from __future__ import annotations

import pytest
import torch
from _helpers import SENTIMENT, tiny_model

from bayeshead.data import TextDataset
from bayeshead.training import CheckpointError, Trainer
from bayeshead.training.schedule import lr_multiplier

TRAIN = TextDataset(*SENTIMENT)
VAL = TextDataset(["good fun", "so bad", "lovely", "awful"], [1, 0, 1, 0])

POLAR_VBLL = [
    "adapter.kind=polar", "adapter.rank=2", "adapter.target_modules=[q_proj, v_proj]",
    "head.kind=vbll_classification", "optimizer.kind=riemannian_adam", "optimizer.lr=0.05",
    "training.batch_size=4",
]


def _snapshot(params):
    return [p.detach().clone() for p in params]


def _changed(before, params):
    return [not torch.equal(b, p.detach()) for b, p in zip(before, params, strict=True)]


def test_each_alternating_block_changes_only_its_own_parameters(offline_tokenizer):
    model = tiny_model(offline_tokenizer, POLAR_VBLL)
    trainer = Trainer(model)
    assert set(trainer.optimizers) == {"head", "adapters"}
    head, body = trainer.head_params, trainer.body_params
    assert head and body and not {id(p) for p in head} & {id(p) for p in body}
    frozen = [p for p in model.backbone.parameters() if not p.requires_grad]
    model.head.set_n_train(len(TRAIN))
    model.train()
    features = model.features(TRAIN.texts[:4])
    labels = TRAIN.labels[:4]

    h0, b0, f0 = _snapshot(head), _snapshot(body), _snapshot(frozen)
    trainer.head_block(features, labels)
    assert all(_changed(h0, head)), "every head parameter must move in the head block"
    assert not any(_changed(b0, body)), "the head block must not touch the adapters"
    assert not any(_changed(f0, frozen))

    h1, b1 = _snapshot(head), _snapshot(body)
    trainer.adapter_block(features, labels)
    assert not any(_changed(h1, head)), "the adapter block must not touch the head"
    moved = dict(zip([n for n, p in model.backbone.named_parameters() if p.requires_grad], _changed(b1, body), strict=True))
    assert any(v for k, v in moved.items() if k.endswith("theta")), moved
    assert any(v for k, v in moved.items() if k.endswith((".U", ".V"))), moved
    assert not any(_changed(f0, frozen)), "base weights stay frozen"
    assert all(p.requires_grad for p in head), "the head is unfrozen again after the adapter block"


def test_head_steps_and_joint_mode(offline_tokenizer):
    model = tiny_model(offline_tokenizer, [*POLAR_VBLL, "training.head_steps=3", "training.max_steps=2"])
    trainer = Trainer(model)
    trainer.fit(TRAIN)
    head_opt = trainer.optimizers["head"]
    assert all(head_opt.state[p]["step"] == 6 for p in trainer.head_params)  # 3 per mini-batch
    adapter_steps = {int(s["step"]) for s in trainer.optimizers["adapters"].state.values() if "step" in s}
    assert adapter_steps == {2}

    joint = tiny_model(offline_tokenizer, [*POLAR_VBLL, "training.mode=joint", "training.max_steps=2", "training.head_lr=0.2"])
    trainer = Trainer(joint)
    assert set(trainer.optimizers) == {"joint"}
    head_ids = {id(p) for p in trainer.head_params}
    lrs = {g["lr"] for g in trainer.optimizers["joint"].param_groups if {id(p) for p in g["params"]} == head_ids}
    assert lrs == {0.2}, "the head has its own parameter group at training.head_lr"
    theta0 = _snapshot(trainer.body_params)
    trainer.fit(TRAIN)
    assert any(_changed(theta0, trainer.body_params))


def test_frozen_backbone_trains_head_only_and_logs(offline_tokenizer):
    model = tiny_model(offline_tokenizer, ["head.kind=deterministic", "training.batch_size=5", "training.epochs=2"])
    frozen = _snapshot(model.backbone.parameters())
    trainer = Trainer(model)
    assert set(trainer.optimizers) == {"head"}
    history = trainer.fit(TRAIN, VAL)
    assert len(history) == 6  # ceil(12 / 5) * 2
    assert [r["step"] for r in history] == [1, 2, 3, 4, 5, 6]
    assert "val_nll" in history[2] and "val_nll" in history[5] and "val_nll" not in history[0]
    assert not any(_changed(frozen, model.backbone.parameters()))


def test_adapter_diagnostics_are_logged(offline_tokenizer):
    model = tiny_model(offline_tokenizer, [*POLAR_VBLL, "training.log_every=1", "training.max_steps=2"])
    history = Trainer(model).fit(TRAIN)
    keys = [k for k in history[-1] if k.startswith("diag/")]
    assert any(k.endswith("/orth_U") for k in keys) and any(k.endswith("/stable_rank") for k in keys)
    assert max(history[-1][k] for k in keys if "/orth_" in k) < 1e-4


def test_lr_schedules():
    assert [lr_multiplier(s, 10, 2) for s in range(3)] == [0.5, 1.0, 1.0]
    assert lr_multiplier(2, 10, 2, "linear") == 1.0 and lr_multiplier(10, 10, 2, "linear") == 0.0
    assert lr_multiplier(2, 10, 2, "cosine") == 1.0 and abs(lr_multiplier(6, 10, 2, "cosine") - 0.5) < 1e-12
    with pytest.raises(ValueError, match="schedule"):
        lr_multiplier(5, 10, 0, "step")


def test_warmup_sets_optimizer_lr(offline_tokenizer):
    model = tiny_model(offline_tokenizer, [*POLAR_VBLL, "training.warmup_steps=4", "training.max_steps=1"])
    trainer = Trainer(model)
    history = trainer.fit(TRAIN)
    assert history[0]["lr_multiplier"] == 0.25
    assert all(abs(g["lr"] - 0.25 * g["base_lr"]) < 1e-15 for g in trainer.optimizers["adapters"].param_groups)


def test_early_stopping_restores_the_best_parameters(offline_tokenizer):
    model = tiny_model(
        offline_tokenizer,
        ["head.kind=deterministic", "optimizer.lr=3.0", "training.batch_size=2", "training.epochs=6",
         "training.eval_every=1", "training.early_stopping_patience=2"],
    )
    trainer = Trainer(model)
    history = trainer.fit(TRAIN, VAL)
    scores = [r["val_nll"] for r in history]
    assert len(history) < 36, "a huge learning rate makes validation NLL worse: training stops early"
    best = min(scores)
    from bayeshead.training.evaluate import evaluate_nll

    assert abs(evaluate_nll(model, VAL) - best) < 1e-6


def test_posthoc_stage_runs_laplace_temperature_and_refinement(offline_tokenizer):
    laplace = tiny_model(offline_tokenizer, ["head.kind=laplace", "head.hessian_structure=full", "training.max_steps=2"])
    Trainer(laplace).fit(TRAIN)
    assert laplace.head.is_fitted

    temperature = tiny_model(offline_tokenizer, ["head.kind=temperature", "training.max_steps=2"])
    with pytest.raises(ValueError, match="validation"):
        Trainer(temperature).fit(TRAIN)
    trainer = Trainer(temperature)
    trainer.fit(TRAIN, VAL)
    assert trainer.posthoc["temperature"] > 0

    refined = tiny_model(offline_tokenizer, [*POLAR_VBLL, "training.max_steps=2", "training.laplace_refine=true"])
    trainer = Trainer(refined)
    trainer.fit(TRAIN)
    assert trainer.posthoc["laplace_prior_precision"] == pytest.approx(1.0 / refined.head.prior_var)

    wrong = tiny_model(offline_tokenizer, ["head.kind=deterministic", "training.max_steps=1", "training.laplace_refine=true"])
    with pytest.raises(ValueError, match="laplace_refine"):
        Trainer(wrong).fit(TRAIN)


class _Killed(Exception):
    pass


RESUME = [
    *POLAR_VBLL, "adapter.dropout=0.2", "training.epochs=3", "training.checkpoint_every=2",
    "training.warmup_steps=2", "training.schedule=cosine", "training.head_steps=2", "training.laplace_refine=true",
]


def _final_state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_resume_after_kill_equals_an_uninterrupted_run(offline_tokenizer, tmp_path):
    full = tiny_model(offline_tokenizer, RESUME)
    full_history = Trainer(full, checkpoint_dir=tmp_path / "full").fit(TRAIN, VAL)
    assert len(full_history) == 9

    def kill_at_5(step, row):
        if step == 5:
            raise _Killed

    first = tiny_model(offline_tokenizer, RESUME)
    with pytest.raises(_Killed):
        Trainer(first, checkpoint_dir=tmp_path / "run", on_step=kill_at_5).fit(TRAIN, VAL)
    resumed = tiny_model(offline_tokenizer, RESUME)  # a fresh process would rebuild the model like this
    trainer = Trainer(resumed, checkpoint_dir=tmp_path / "run", resume=True)
    history = trainer.fit(TRAIN, VAL)
    assert [r["step"] for r in history] == [r["step"] for r in full_history]
    expected = _final_state(full)
    got = _final_state(resumed)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


def test_resume_refuses_a_different_config_or_data(offline_tokenizer, tmp_path):
    model = tiny_model(offline_tokenizer, [*POLAR_VBLL, "training.max_steps=2", "training.checkpoint_every=1"])
    Trainer(model, checkpoint_dir=tmp_path).fit(TRAIN)
    other = tiny_model(offline_tokenizer, [*POLAR_VBLL, "training.max_steps=2", "training.checkpoint_every=1", "optimizer.lr=0.1"])
    with pytest.raises(CheckpointError, match="optimizer.lr"):
        Trainer(other, checkpoint_dir=tmp_path, resume=True).fit(TRAIN)
    same = tiny_model(offline_tokenizer, [*POLAR_VBLL, "training.max_steps=2", "training.checkpoint_every=1"])
    with pytest.raises(CheckpointError, match="different training data"):
        Trainer(same, checkpoint_dir=tmp_path, resume=True).fit(VAL)


def test_resume_refuses_a_corrupt_checkpoint(offline_tokenizer, tmp_path):
    model = tiny_model(offline_tokenizer, [*POLAR_VBLL, "training.max_steps=2", "training.checkpoint_every=1"])
    Trainer(model, checkpoint_dir=tmp_path).fit(TRAIN)
    newest = max(tmp_path.glob("step-*"))
    blob = newest / "state.safetensors"
    data = bytearray(blob.read_bytes())
    data[-3] ^= 0xFF
    blob.write_bytes(bytes(data))
    again = tiny_model(offline_tokenizer, [*POLAR_VBLL, "training.max_steps=2", "training.checkpoint_every=1"])
    with pytest.raises(CheckpointError, match="state.safetensors"):
        Trainer(again, checkpoint_dir=tmp_path, resume=True).fit(TRAIN)


def test_trainer_rejects_inconsistent_options(offline_tokenizer, tmp_path):
    model = tiny_model(offline_tokenizer, [*POLAR_VBLL, "training.checkpoint_every=1"])
    with pytest.raises(ValueError, match="checkpoint directory"):
        Trainer(model)
    with pytest.raises(ValueError, match="resume"):
        Trainer(tiny_model(offline_tokenizer, POLAR_VBLL), resume=True)
    bad = tiny_model(offline_tokenizer, ["head.kind=deterministic", "training.early_stopping_patience=1"])
    with pytest.raises(ValueError, match="validation"):
        Trainer(bad).fit(TRAIN)
    three = TextDataset(["a", "b", "c"], [0, 1, 2])
    with pytest.raises(ValueError, match="label 2"):
        Trainer(tiny_model(offline_tokenizer, ["head.kind=deterministic"])).fit(three)


def test_progress_is_logged(offline_tokenizer, caplog):
    model = tiny_model(offline_tokenizer, [*POLAR_VBLL, "training.log_every=1", "training.max_steps=2"])
    with caplog.at_level("INFO", logger="bayeshead.training"):
        Trainer(model).fit(TRAIN)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert len(lines) == 2 and "total=" in lines[0] and "max_orth_error=" in lines[0] and "mean_stable_rank=" in lines[0]


@pytest.mark.parametrize("optimizer", ["riemannian_adam", "landing"])
@pytest.mark.parametrize("mode", ["alternating", "joint"])
def test_polar_theta_lr_ratio_scales_only_theta(offline_tokenizer, optimizer, mode):
    """adapter.theta_lr_ratio gives Θ its own group at ratio × lr; U, V keep stiefel_lr, the head
    keeps head_lr; Adam's first step moves Θ ratio times as far (|Δθ| ≈ lr for Adam's step 1)."""
    steps = {}
    for ratio in (1.0, 4.0):
        overrides = [*POLAR_VBLL, f"optimizer.kind={optimizer}", "optimizer.lr=0.01", "optimizer.stiefel_lr=0.02",
                     f"training.mode={mode}", "training.head_lr=0.003", f"adapter.theta_lr_ratio={ratio}",
                     "training.max_steps=1"]
        model = tiny_model(offline_tokenizer, overrides)
        trainer = Trainer(model)
        opt = trainer.optimizers["joint" if mode == "joint" else "adapters"]
        names = {id(p): n for n, p in model.named_parameters()}
        lr_of = {names[id(p)]: g["lr"] for g in opt.param_groups for p in g["params"]}
        thetas = [n for n in lr_of if n.endswith(".theta")]
        assert thetas and all(lr_of[n] == pytest.approx(0.01 * ratio) for n in thetas)
        assert all(lr_of[n] == pytest.approx(0.02) for n in lr_of if n.endswith((".U", ".V")))
        assert all(lr_of[n] == pytest.approx(0.003) for n in lr_of if n.startswith("head."))
        before = {n: p.detach().clone() for n, p in model.named_parameters() if n in thetas}
        trainer.fit(TRAIN)
        params = dict(model.named_parameters())
        steps[ratio] = torch.stack([(params[n].detach() - before[n]).abs().max() for n in thetas])
    assert torch.allclose(steps[4.0], 4 * steps[1.0], rtol=0.05)


def test_polar_theta_lr_ratio_rejects_non_positive():
    from pydantic import ValidationError

    from bayeshead.config import load_config

    with pytest.raises(ValidationError, match="theta_lr_ratio"):
        load_config(overrides=["adapter.kind=polar", "adapter.theta_lr_ratio=0"])
