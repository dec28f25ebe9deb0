"""The common-sense QA tasks as registry entries (``bayeshead.registry.TASKS``).

A task turns its data files into classification data: the text is the zero-shot BLoB prompt
(:func:`~bayeshead.tasks.prompts.format_prompt`), the label is the index of the correct answer
letter (or ``true``/``false`` for BoolQ), and the number of classes is fixed per task (the most
options any of its questions has), so one C-way head serves every question:

========================  ==  ==========================================
task                      C   answer tokens (causal LMs)
========================  ==  ==========================================
winogrande_s/_m           2   `` A`` `` B``
arc_challenge/_easy       5   `` A`` … `` E`` (a few questions have 3 or 5 options)
obqa                      4   `` A`` … `` D``
mmlu_college_*            4   `` A`` … `` D``
boolq                     2   `` true`` `` false``
========================  ==  ==========================================

With a causal LM the head can start from the LM-head rows of those answer tokens, so that before
fine-tuning it scores exactly what the LM would answer next (BLoB, Wang et al., NeurIPS 2024;
Laplace-LoRA, Yang et al., ICLR 2024).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from bayeshead._builtins import BUILTINS
from bayeshead.config import ComponentConfig
from bayeshead.data import TextDataset
from bayeshead.errors import UserInputError
from bayeshead.registry import TASKS
from bayeshead.tasks.options import option_dataset
from bayeshead.tasks.prompts import PROMPT_FAMILY, format_prompt
from bayeshead.tasks.readers import BOOLQ_CHOICES
from bayeshead.tasks.records import QARecord, letters
from bayeshead.tasks.splits import TASK_FILES, load_task

__all__ = ["NUM_CLASSES", "QATask", "QATaskConfig", "task_config_class"]

NUM_CLASSES: dict[str, int] = {
    "winogrande_s": 2,
    "winogrande_m": 2,
    "arc_challenge": 5,
    "arc_easy": 5,
    "obqa": 4,
    "boolq": 2,
    "mmlu_college_chemistry": 4,
    "mmlu_college_physics": 4,
}
"""Classes of each task's head: the largest number of options among its questions."""

class QATaskConfig(ComponentConfig):
    """``task`` section of an experiment: which QA task, where its data is, how to start the head."""

    kind: str = Field(description="Task name: " + ", ".join(NUM_CLASSES) + ".")
    data_dir: str | None = Field(
        None,
        description="Folder of the benchmark data files (default: $BAYESHEAD_DATA, else ../shared/data).",
    )
    head_init: Literal["auto", "lm_head", "random"] = Field(
        "auto",
        description="Start the head from the LM-head rows of the answer tokens ('auto': when the "
        "backbone is a causal LM), or randomly.",
    )
    formulation: Literal["letter", "options"] = Field(
        "letter",
        description="'letter': one prompt listing the options, a C-way head over the answer letters (BLoB's "
        "protocol); 'options': each option its own sequence, scored by a per-option head "
        "(QATask.option_dataset).",
    )

    @field_validator("kind")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in NUM_CLASSES:
            raise UserInputError(f"unknown task {value!r}; the QA tasks are {', '.join(NUM_CLASSES)}")
        return value


class QATask:
    """One common-sense QA task: prompts, labels, class count and answer strings."""

    Config = QATaskConfig

    def __init__(self, config: QATaskConfig | str) -> None:
        self.config = task_config_class(config)() if isinstance(config, str) else config
        self.name = self.config.kind

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES[self.name]

    @property
    def class_names(self) -> list[str]:
        """``["A", "B", ...]``, or ``["true", "false"]`` for BoolQ."""
        if PROMPT_FAMILY[self.name] == "boolq":
            return list(BOOLQ_CHOICES)
        return list(letters(self.num_classes))

    @property
    def answers(self) -> list[str]:
        """The continuation each class stands for, with its leading space (``" A"``, ``" true"``)."""
        return [f" {name}" for name in self.class_names]

    @property
    def has_train_split(self) -> bool:
        return TASK_FILES[self.name].train is not None

    def records(
        self, data_dir: str | Path | None = None
    ) -> tuple[list[QARecord] | None, list[QARecord]]:
        """``(train records or None, eval records)`` from ``data_dir`` (else the config's)."""
        return load_task(self.name, data_dir if data_dir is not None else self.config.data_dir)

    @property
    def formulation(self) -> str:
        """``"letter"`` or ``"options"`` (see :meth:`dataset`)."""
        return self.config.formulation

    def option_dataset(self, records: list[QARecord], name: str) -> TextDataset:
        """The per-option formulation of ``records``: one option group per question, any number
        of options up to the task's C (:func:`bayeshead.tasks.options.option_dataset`)."""
        return option_dataset(self.name, records, name, class_names=self.class_names)

    def fits(self, record: QARecord) -> bool:
        """Whether the head's C classes (option positions) cover the record's options."""
        return len(record.choices) <= self.num_classes

    def dataset(self, records: list[QARecord], name: str) -> TextDataset:
        """The task's data in its formulation: ``letter``, prompts and answer indices for a C-way
        head; ``options``, option groups for a per-option head (:meth:`option_dataset`). A record
        with more options than the task has classes is an error (filter with :meth:`fits` first)."""
        too_many = [r.id for r in records if not self.fits(r)]
        if too_many:
            raise UserInputError(
                f"{self.name}: {len(too_many)} question(s) have more than {self.num_classes} options "
                f"(e.g. {too_many[0]}); filter them with QATask.fits"
            )
        if self.formulation == "options":
            return self.option_dataset(records, name)
        return TextDataset(
            texts=[format_prompt(self.name, r) for r in records],
            labels=[r.answer for r in records],
            class_names=self.class_names,
            name=f"{self.name}/{name}",
        )


def task_config_class(name: str) -> type[QATaskConfig]:
    """A :class:`QATaskConfig` subclass whose ``kind`` is fixed to ``name`` (as every registry
    entry's config pins its ``kind``)."""
    title = "".join(part.capitalize() for part in name.split("_"))
    return type(
        f"{title}TaskConfig",
        (QATaskConfig,),
        {"__annotations__": {"kind": Literal[name]}, "kind": name, "__module__": __name__},
    )


def _register() -> None:
    """Register every task under its name, with the description of the built-in table."""
    for name, (_module, description) in BUILTINS["tasks"].items():
        TASKS.add(name, QATask, description=description, config=task_config_class(name))


_register()
