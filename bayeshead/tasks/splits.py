"""Which files make up each task of the BLoB / Laplace-LoRA common-sense QA protocol.

The evaluation split of every in-distribution task is the dataset's dev (validation) split; the
official test splits are not used. MMLU subjects are out-of-distribution evaluation sets only
(no training split). Paths are relative to the data directory (``shared/data`` of the project,
described in its ``README.md``). Without a data directory, :func:`load_task` loads the same tasks
from the Hugging Face hub (:mod:`bayeshead.tasks.hub`).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Literal, NamedTuple

from bayeshead.errors import UserInputError
from bayeshead.tasks.hub import load_task_from_hub
from bayeshead.tasks.readers import read_arc_or_obqa, read_boolq, read_mmlu_csv, read_winogrande
from bayeshead.tasks.records import QARecord

__all__ = [
    "BOOLQ_SPLIT_SEED",
    "DATA_DIR_ENV",
    "TASK_FILES",
    "TaskFiles",
    "TaskSource",
    "default_data_dir",
    "load_task",
    "split_boolq_dev",
]

DATA_DIR_ENV = "BAYESHEAD_DATA"
BOOLQ_SPLIT_SEED = 0

TaskSource = Literal["auto", "files", "hub"]
_SOURCES = ("auto", "files", "hub")


class TaskFiles(NamedTuple):
    """``(reader, train path or None, eval path)``, paths relative to the data directory."""

    reader: Callable[[str | Path], list[QARecord]]
    train: str | None
    eval: str


TASK_FILES: dict[str, TaskFiles] = {
    "winogrande_s": TaskFiles(read_winogrande, "winogrande/train_s.jsonl", "winogrande/dev.jsonl"),
    "winogrande_m": TaskFiles(read_winogrande, "winogrande/train_m.jsonl", "winogrande/dev.jsonl"),
    "arc_challenge": TaskFiles(
        read_arc_or_obqa,
        "arc_challenge/ARC-Challenge-Train.jsonl",
        "arc_challenge/ARC-Challenge-Dev.jsonl",
    ),
    "arc_easy": TaskFiles(
        read_arc_or_obqa, "arc_easy/ARC-Easy-Train.jsonl", "arc_easy/ARC-Easy-Dev.jsonl"
    ),
    "obqa": TaskFiles(read_arc_or_obqa, "openbookqa/train.jsonl", "openbookqa/dev.jsonl"),
    # BoolQ train with passages is not available: both splits come from the dev file,
    # see split_boolq_dev (TaskFiles.train is the file the training half is drawn from).
    "boolq": TaskFiles(read_boolq, "boolq/dev.jsonl", "boolq/dev.jsonl"),
    "mmlu_college_chemistry": TaskFiles(
        read_mmlu_csv, None, "mmlu/test/college_chemistry_test.csv"
    ),
    "mmlu_college_physics": TaskFiles(read_mmlu_csv, None, "mmlu/test/college_physics_test.csv"),
}
"""Task name -> :class:`TaskFiles`.

* ``winogrande_s`` / ``winogrande_m``: WinoGrande v1.1 train_s (640) / train_m (2,558), eval dev
  (1,267) (Sakaguchi et al., AAAI 2020).
* ``arc_challenge`` / ``arc_easy``: ARC-V1-Feb2018 Train (1,119 / 2,251), eval Dev (299 / 570)
  (Clark et al., 2018).
* ``obqa``: OpenBookQA Main train (4,957), eval dev (500) (Mihaylov et al., EMNLP 2018).
* ``boolq``: BoolQ dev (3,270), split in two halves by :func:`split_boolq_dev`
  (Clark et al., NAACL 2019).
* ``mmlu_college_chemistry`` / ``mmlu_college_physics``: MMLU test (100 / 102), eval only
  (Hendrycks et al., ICLR 2021).
"""


def default_data_dir() -> Path | None:
    """``$BAYESHEAD_DATA`` when set, else ``../shared/data`` (from the working directory) when
    that folder exists, else ``None``."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env)
    candidate = Path.cwd().parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def split_boolq_dev(records: list[QARecord]) -> tuple[list[QARecord], list[QARecord]]:
    """Split BoolQ dev into ``(train half, eval half)``.

    The BoolQ training file with passages is not in the data directory (only a question-only
    version is), so this protocol trains on half of the dev split and evaluates on the other
    half. The record positions are shuffled with ``random.Random(0)``; the first
    ``len(records) // 2`` positions (1,635 of 3,270) are the training half, the rest the eval
    half; each half keeps file order.
    """
    order = list(range(len(records)))
    random.Random(BOOLQ_SPLIT_SEED).shuffle(order)
    half = len(records) // 2
    train_idx, eval_idx = sorted(order[:half]), sorted(order[half:])
    return [records[i] for i in train_idx], [records[i] for i in eval_idx]


def load_task(
    name: str, data_dir: str | Path | None = None, *, source: TaskSource = "auto"
) -> tuple[list[QARecord] | None, list[QARecord]]:
    """``(train records or None, eval records)`` of task ``name``.

    ``source`` says where the questions come from:

    * ``"files"``: the data directory ``data_dir``, by default :func:`default_data_dir`; no
      directory is an error.
    * ``"hub"``: the Hugging Face hub (:func:`bayeshead.tasks.hub.load_task_from_hub`, needs
      the ``datasets`` package and a connection); ``data_dir`` must then be ``None``.
    * ``"auto"`` (default): the files when ``data_dir`` is given or :func:`default_data_dir`
      finds a directory, else the hub. A ``data_dir`` (or ``$BAYESHEAD_DATA``) that is not a
      directory stays an error rather than falling back.

    MMLU tasks have no training split (``None``). From the files, ``boolq`` returns the two
    halves of BoolQ dev (:func:`split_boolq_dev`: a seeded half/half split, since the training
    file with passages is absent); from the hub it returns the official train and validation
    splits.
    """
    if name not in TASK_FILES:
        raise UserInputError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASK_FILES))}")
    if source not in _SOURCES:
        raise UserInputError(
            f"unknown task source {source!r}; expected one of {', '.join(_SOURCES)}"
        )
    if source == "hub":
        if data_dir is not None:
            raise UserInputError(
                f"a data directory ({data_dir}) and source 'hub' were both given: drop one"
            )
        return load_task_from_hub(name)
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if root is None and source == "auto":
        return load_task_from_hub(name)
    if root is None or not root.is_dir():
        where = f"{root} is not a directory" if root is not None else "no data directory found"
        raise UserInputError(
            f"{where}: pass --data-dir or set {DATA_DIR_ENV} to the folder holding the benchmark "
            "data (winogrande/, arc_challenge/, ...)"
        )
    files = TASK_FILES[name]
    if name == "boolq":
        return split_boolq_dev(files.reader(root / files.eval))
    train = files.reader(root / files.train) if files.train is not None else None
    return train, files.reader(root / files.eval)
