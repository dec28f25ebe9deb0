"""Zero-shot prompts in the format of BLoB (Wang et al., "BLoB: Bayesian Low-Rank Adaptation by
Backpropagation for Large Language Models", NeurIPS 2024).

The templates follow the zero-shot preambles of the BLoB code, github.com/Wang-ML-Lab/bayesian-peft,
file ``dataset/utils/dsets.py`` (classes ``WinograndeDataset``, ``ARCDataset``, ``OBQADataset``,
``MMLUDataset``, ``BoolQDataset``; the file carries Maxime Robeyns's copyright, i.e. it comes
from the Laplace-LoRA code of Yang et al., ICLR 2024).

Multiple-choice tasks (WinoGrande, ARC, OpenBookQA, MMLU)::

    Return the label of the correct answer for the question below.

    Question: <question>
    Choices:
    A) <choice 0>
    B) <choice 1>
    ...
    Answer:

BoolQ (the passage is cut to its first :data:`BOOLQ_PASSAGE_CHARS` characters, as in BLoB)::

    Read the passage below and answer the question with the words 'true' or 'false'.

    Passage: <passage>
    Question: <question>
    Answer (true or false):

The model's answer is the next token: a label letter (``" A"``, ``" B"``, ...) for the
multiple-choice tasks, the word ``" true"`` or ``" false"`` for BoolQ. Two slips of the upstream
code are not reproduced: its ARC and OpenBookQA prompts print ``<text>) <label>`` (the zip
arguments are swapped) and its OpenBookQA template spells "Chioces"; here every task writes
``<label>) <text>`` under "Choices:".
"""

from __future__ import annotations

from bayeshead.errors import UserInputError
from bayeshead.tasks.records import QARecord

__all__ = [
    "BOOLQ_PASSAGE_CHARS",
    "BOOLQ_TEMPLATE",
    "MC_TEMPLATE",
    "PROMPT_FAMILY",
    "format_choices",
    "format_prompt",
]

MC_TEMPLATE = """Return the label of the correct answer for the question below.

Question: {question}
Choices:
{choices}
Answer:"""

BOOLQ_TEMPLATE = """Read the passage below and answer the question with the words 'true' or 'false'.

Passage: {passage}
Question: {question}
Answer (true or false):"""

BOOLQ_PASSAGE_CHARS = 1024
"""BLoB truncates BoolQ passages to this many characters before formatting."""

PROMPT_FAMILY: dict[str, str] = {
    "winogrande_s": "multiple_choice",
    "winogrande_m": "multiple_choice",
    "arc_challenge": "multiple_choice",
    "arc_easy": "multiple_choice",
    "obqa": "multiple_choice",
    "mmlu_college_chemistry": "multiple_choice",
    "mmlu_college_physics": "multiple_choice",
    "boolq": "boolq",
}
"""Task name -> template family (``"multiple_choice"`` or ``"boolq"``)."""


def format_choices(record: QARecord) -> str:
    """``"A) first\\nB) second..."``: one line per option, label then text."""
    return "\n".join(
        f"{label}) {text}" for label, text in zip(record.labels, record.choices, strict=True)
    )


def format_prompt(task_name: str, record: QARecord) -> str:
    """The zero-shot BLoB prompt for ``record`` of task ``task_name``; it ends without a space."""
    family = PROMPT_FAMILY.get(task_name)
    if family is None:
        raise UserInputError(
            f"unknown task {task_name!r}; known tasks: {', '.join(sorted(PROMPT_FAMILY))}"
        )
    if family == "boolq":
        if record.passage is None:
            raise UserInputError(f"{record.id}: a BoolQ prompt needs a passage")
        return BOOLQ_TEMPLATE.format(
            passage=record.passage[:BOOLQ_PASSAGE_CHARS], question=record.question
        )
    return MC_TEMPLATE.format(question=record.question, choices=format_choices(record))
