"""Zero-shot rows of a QA suite: what the pretrained causal LM answers before any training.

Two ways to put a question to the LM, each a row of the results table (``zero_shot: [cloze,
letter]`` in a suite), scored on the same test questions and OOD sets as the trained methods:

* ``zero_shot_cloze``: every option's text scored by its log-likelihood after the question
  (:func:`~bayeshead.tasks.cloze.cloze_predictive`), p(k | q) = softmax_k(s_k) over the question's
  own options. ARC, OpenBookQA and MMLU use the per-token mean log-likelihood s_k = LL_k / n_k
  (options of different lengths; lm-evaluation-harness's length-normalised accuracy, per token);
  WinoGrande and BoolQ the total s_k = LL_k (their continuations have equal length or one token,
  and the total keeps the LM's own probabilities).
* ``zero_shot_letter``: the BLoB prompt listing the options, and the LM's next-token logits of the
  answer letters (" A", " B", ...), i.e. a C-way softmax head whose rows are the LM-head rows of
  those tokens (:func:`~bayeshead.heads.init_rows.init_head_from_rows`) on the last token's
  features, untrained.

Nothing is fitted, so the prediction is the same for every seed: it is computed once per task and
written as one record per seed of the suite (so tables and paired comparisons line up with the
trained methods'), with ``train_seconds`` 0 and ``method_kind`` ``"zero_shot"``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from bayeshead.bench.data import BenchData
from bayeshead.bench.resources import PeakMemory
from bayeshead.bench.suite import SuiteConfig
from bayeshead.config import ExperimentConfig, load_config
from bayeshead.errors import UserInputError

__all__ = ["ZERO_SHOT_KINDS", "zero_shot_name", "zero_shot_record", "zero_shot_config"]

ZERO_SHOT_KINDS = ("cloze", "letter")

#: override sections a zero-shot row takes from the suite (the rest configure training)
_KEPT_SECTIONS = ("backbone.", "evaluation.")

#: cloze scores that are token means (options of different lengths); the other families sum
_TOKEN_MEAN_FAMILIES = ("multiple_choice",)


def zero_shot_name(kind: str) -> str:
    """The row name of a zero-shot kind: ``zero_shot_cloze`` or ``zero_shot_letter``."""
    if kind not in ZERO_SHOT_KINDS:
        raise UserInputError(f"unknown zero-shot kind {kind!r}; the kinds are {', '.join(ZERO_SHOT_KINDS)}")
    return f"zero_shot_{kind}"


def zero_shot_config(suite: SuiteConfig, task: str, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """The suite's backbone and evaluation settings (from its base and the caller's overrides) for
    ``task``; its adapter, head, method and training settings do not apply to a zero-shot row."""
    kept = [o for o in [*suite.base, *overrides] if o.strip().startswith(_KEPT_SECTIONS)]
    config = load_config(None, [*kept, f"task.kind={task}", "head.kind=deterministic"])
    if config.backbone.model_class != "causal_lm":
        raise UserInputError(
            f"zero-shot rows score with a causal LM's own next-token distribution, but backbone.model_class="
            f"{config.backbone.model_class!r}; set backbone.model_class=causal_lm (and a causal LM, e.g. "
            "backbone.name_or_path=smollm2-135m) or drop zero_shot from the suite"
        )
    if config.backbone.pooling != "last_token":
        raise UserInputError(
            f"zero-shot rows read the LM's prediction at the last token, but backbone.pooling="
            f"{config.backbone.pooling!r}; set backbone.pooling=last_token"
        )
    return config


def _cloze(backbone: Any, task: str, records: list[Any], num_classes: int, batch: int) -> Any:
    from bayeshead.tasks.cloze import cloze_predictive
    from bayeshead.tasks.prompts import PROMPT_FAMILY

    normalize = "tokens" if PROMPT_FAMILY[task] in _TOKEN_MEAN_FAMILIES else "none"
    return cloze_predictive(backbone, task, records, normalize=normalize, batch_size=batch).padded(num_classes)


def _letter(model: Any, task: str, records: list[Any], batch: int) -> Any:
    from bayeshead.evaluation import predict_dataset
    from bayeshead.tasks.prompts import format_prompt

    return predict_dataset(model.predict, [format_prompt(task, r) for r in records], batch)


def zero_shot_record(
    suite: SuiteConfig, kind: str, data: BenchData, overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """Score ``data`` (a QA task's :class:`BenchData`, with its records) zero-shot; return a run
    record without its seed (the caller writes one per seed)."""
    from bayeshead.backbones.huggingface import HuggingFaceBackbone
    from bayeshead.bench.runner import run_record, score_predictions
    from bayeshead.heads.init_rows import init_head_from_rows
    from bayeshead.model import BayesianModel
    from bayeshead.registry import HEADS, TASKS

    name = zero_shot_name(kind)
    if data.task is None or "test" not in data.records:
        raise UserInputError(f"{name}: zero-shot rows need a QA task with its questions (suite tasks:), not {data.description!r}")
    config = zero_shot_config(suite, data.task, overrides)
    batch = config.evaluation.batch_size
    k = data.num_outputs
    wall = time.perf_counter()
    with PeakMemory() as peak:
        backbone = HuggingFaceBackbone.from_config(config.backbone)
        backbone.requires_grad_(False)
        start = time.perf_counter()
        if kind == "cloze":
            def predict(task: str, records: list[Any]) -> Any:
                return _cloze(backbone, task, records, k, batch)
        else:
            head = HEADS.get("deterministic").from_config(config.head, backbone.feature_dim, k)
            model = BayesianModel(backbone, head.to(backbone.device), config)
            answers = TASKS.create(data.task, TASKS.config_class(data.task)()).answers
            init_head_from_rows(head, *backbone.answer_head_rows(answers))

            def predict(task: str, records: list[Any]) -> Any:
                return _letter(model, task, records, batch)

        with torch.no_grad():
            test = predict(data.task, data.records["test"]).double().to("cpu")
            predict_seconds = time.perf_counter() - start
            ood_sets = {set_name: predict(set_name, data.records[set_name]).double().to("cpu") for set_name in data.ood_sets}
    metrics, examples = score_predictions(data, test, None, ood_sets, config.evaluation.ece_bins)
    # before the trained methods: positions -2, -1
    position = ZERO_SHOT_KINDS.index(kind) - len(ZERO_SHOT_KINDS)
    return run_record(
        suite, data, config, method=name, method_kind="zero_shot", method_position=position,
        head_init="lm_head" if kind == "letter" else "none", posthoc={}, train_seconds=0.0,
        predict_seconds=predict_seconds, wall_start=wall, peak=peak, trainable_parameters=0,
        metrics=metrics, examples=examples,
    )
