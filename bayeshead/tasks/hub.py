"""The common-sense QA tasks loaded online from the Hugging Face hub (``datasets`` package).

Used by :func:`bayeshead.tasks.load_task` when no data directory is found. Every row becomes the
:class:`QARecord` the file readers of :mod:`bayeshead.tasks.readers` build for the same question
(same conversion functions: letters ``A``, ``B``, ... by position, WinoGrande ``"1"`` -> 0,
BoolQ ``true`` -> 0, ARC numeric keys -> their position), so prompts are identical.

Splits: training = hub ``train``, evaluation = hub ``validation`` (the dev split of the files);
MMLU subjects evaluate on ``test`` and have no training split. BoolQ differs from the files on
purpose: the hub has the official training split with passages, so online BoolQ trains on it
(9,427) and evaluates on the whole validation split (3,270) instead of
:func:`bayeshead.tasks.split_boolq_dev`'s halves of dev.

Hub schemas (one dict per row):

* ``allenai/winogrande``: ``sentence``, ``option1``, ``option2``, ``answer`` (``"1"``/``"2"``).
  No ids.
* ``allenai/ai2_arc``: ``id``, ``question``, ``choices`` = ``{"text": [...], "label": [...]}``,
  ``answerKey`` (a letter, or ``"1"``-``"4"``).
* ``allenai/openbookqa`` (``main``): ``id``, ``question_stem``, ``choices`` as ARC,
  ``answerKey``.
* ``google/boolq``: ``question``, ``answer`` (bool), ``passage``. No ids.
* ``cais/mmlu``: ``question``, ``subject``, ``choices`` (4 strings), ``answer`` (int 0-3). No ids.

Where the hub has no id, a record's id is ``"<path>[/<config>]/<split>/<0-based row>"``, e.g.
``"allenai/winogrande/winogrande_s/validation/0"`` or ``"google/boolq/train/3"``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from bayeshead.data.textfile import DataFileError
from bayeshead.errors import UserInputError
from bayeshead.tasks.readers import (
    boolq_record,
    get_field,
    lettered_choice_record,
    mmlu_record,
    winogrande_record,
)
from bayeshead.tasks.records import QARecord

__all__ = ["HUB_SOURCES", "HubSource", "load_task_from_hub"]

DATA_DIR_HINT = (
    "either pass --data-dir or set BAYESHEAD_DATA to the benchmark data folder "
    "(winogrande/, arc_challenge/, ...), or `pip install datasets` (and be online) to load the "
    "tasks from the Hugging Face hub"
)


class HubSource(NamedTuple):
    """``(dataset path, config name or None, train split or None, eval split)`` on the hub."""

    path: str
    config: str | None
    train: str | None
    eval: str


HUB_SOURCES: dict[str, HubSource] = {
    # WinoGrande-S of the BLoB protocol is the hub config winogrande_s (640 training questions).
    "winogrande_s": HubSource("allenai/winogrande", "winogrande_s", "train", "validation"),
    "winogrande_m": HubSource("allenai/winogrande", "winogrande_m", "train", "validation"),
    "arc_challenge": HubSource("allenai/ai2_arc", "ARC-Challenge", "train", "validation"),
    "arc_easy": HubSource("allenai/ai2_arc", "ARC-Easy", "train", "validation"),
    "obqa": HubSource("allenai/openbookqa", "main", "train", "validation"),
    "boolq": HubSource("google/boolq", None, "train", "validation"),
    "mmlu_college_chemistry": HubSource("cais/mmlu", "college_chemistry", None, "test"),
    "mmlu_college_physics": HubSource("cais/mmlu", "college_physics", None, "test"),
}
"""Task name -> :class:`HubSource`; the same tasks and splits as
:data:`bayeshead.tasks.TASK_FILES` (BoolQ: official train / validation, see the module doc)."""

# (row, id to use where the dataset has none, where) -> record
_Converter = Callable[[Mapping[str, Any], str, str], QARecord]


def _string_list(obj: Mapping[str, Any], key: str, where: str) -> list[str]:
    values = get_field(obj, key, list, where)
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise DataFileError(f"{where}: {key}[{i}] must be str, got {type(value).__name__}")
    return values


def _lettered_choices(row: Mapping[str, Any], stem_key: str, where: str) -> QARecord:
    choices = get_field(row, "choices", Mapping, where)
    texts = _string_list(choices, "text", f"{where}: choices")
    labels = _string_list(choices, "label", f"{where}: choices")
    return lettered_choice_record(
        get_field(row, "id", str, where),
        get_field(row, stem_key, str, where),
        texts,
        labels,
        get_field(row, "answerKey", str, where),
        where,
    )


def _arc(row: Mapping[str, Any], fallback_id: str, where: str) -> QARecord:
    return _lettered_choices(row, "question", where)  # ARC rows have ids


def _obqa(row: Mapping[str, Any], fallback_id: str, where: str) -> QARecord:
    return _lettered_choices(row, "question_stem", where)  # OpenBookQA rows have ids


def _mmlu(row: Mapping[str, Any], fallback_id: str, where: str) -> QARecord:
    return mmlu_record(
        fallback_id,
        get_field(row, "question", str, where),
        _string_list(row, "choices", where),
        get_field(row, "answer", int, where),
        where,
    )


_CONVERTERS: dict[str, _Converter] = {
    "allenai/winogrande": winogrande_record,
    "allenai/ai2_arc": _arc,
    "allenai/openbookqa": _obqa,
    "google/boolq": boolq_record,
    "cais/mmlu": _mmlu,
}


def _import_load_dataset() -> Callable[..., Any]:
    try:
        from datasets import load_dataset
    except ImportError:
        raise UserInputError(
            f"no data directory was found and `datasets` is not installed: {DATA_DIR_HINT}"
        ) from None
    return load_dataset


def _convert_split(
    source: HubSource, split: str, load_dataset: Callable[..., Any]
) -> list[QARecord]:
    dataset = source.path if source.config is None else f"{source.path}/{source.config}"
    label = source.path if source.config is None else f"{source.path} ({source.config})"
    try:
        rows: Iterable[Any] = load_dataset(source.path, source.config, split=split)
    except UserInputError:
        raise
    except Exception as err:  # network, missing dataset or config, ...: say which and what to do
        raise UserInputError(
            f"could not load {label}, split {split!r}, from the Hugging Face hub "
            f"({type(err).__name__}: {err}); pass --data-dir or set BAYESHEAD_DATA to the "
            "benchmark data folder to use the local files instead"
        ) from err
    convert = _CONVERTERS[source.path]
    records = []
    for index, row in enumerate(rows):
        where = f"{label}, split {split!r}, row {index}"
        if not isinstance(row, Mapping):
            raise DataFileError(f"{where}: expected a mapping of columns, got {type(row).__name__}")
        records.append(convert(row, f"{dataset}/{split}/{index}", where))
    if not records:
        raise DataFileError(f"{label}, split {split!r}: the split has no rows")
    return records


def load_task_from_hub(
    name: str, *, load_dataset: Callable[..., Any] | None = None
) -> tuple[list[QARecord] | None, list[QARecord]]:
    """``(train records or None, eval records)`` of task ``name`` from the Hugging Face hub.

    ``load_dataset(path, config, split=...)`` defaults to ``datasets.load_dataset`` (imported
    here; :class:`UserInputError` when the package is not installed); it must return the rows of
    that split as mappings in the hub schema (see the module doc). A malformed row raises
    :class:`bayeshead.data.textfile.DataFileError` naming the dataset, split, row and problem.
    """
    if name not in HUB_SOURCES:
        raise UserInputError(
            f"unknown task {name!r}; known tasks: {', '.join(sorted(HUB_SOURCES))}"
        )
    if load_dataset is None:
        load_dataset = _import_load_dataset()
    source = HUB_SOURCES[name]
    train = None if source.train is None else _convert_split(source, source.train, load_dataset)
    return train, _convert_split(source, source.eval, load_dataset)
