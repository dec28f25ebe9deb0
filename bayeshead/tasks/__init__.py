"""Common-sense QA benchmarks of the BLoB / Laplace-LoRA protocol: readers for the original data
files, the task -> files table, the same tasks from the Hugging Face hub when no data directory is
found, and zero-shot prompts.

WinoGrande (S, M), ARC (Challenge, Easy), OpenBookQA and BoolQ are the in-distribution tasks;
ARC and MMLU college chemistry / physics are also used as out-of-distribution evaluation sets.
"""

from bayeshead.tasks.hub import HUB_SOURCES, HubSource, load_task_from_hub
from bayeshead.tasks.prompts import PROMPT_FAMILY, format_choices, format_prompt
from bayeshead.tasks.readers import (
    BOOLQ_CHOICES,
    read_arc_or_obqa,
    read_boolq,
    read_mmlu_csv,
    read_winogrande,
)
from bayeshead.tasks.records import QARecord
from bayeshead.tasks.splits import (
    TASK_FILES,
    TaskFiles,
    TaskSource,
    default_data_dir,
    load_task,
    split_boolq_dev,
)

__all__ = [
    "BOOLQ_CHOICES",
    "HUB_SOURCES",
    "HubSource",
    "PROMPT_FAMILY",
    "QARecord",
    "TASK_FILES",
    "TaskFiles",
    "TaskSource",
    "default_data_dir",
    "format_choices",
    "format_prompt",
    "load_task",
    "load_task_from_hub",
    "read_arc_or_obqa",
    "read_boolq",
    "read_mmlu_csv",
    "read_winogrande",
    "split_boolq_dev",
]
