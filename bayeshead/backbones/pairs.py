"""Text pairs for causal LMs: one prompt per pair from a template.

An encoder sees a pair (a, b) through its tokenizer's own pair encoding (BERT-style
``[CLS] a [SEP] b [SEP]`` with segment ids). A decoder has no pair encoding, so the pair is
written into one prompt, by default ``"{a}\\n{b}"``; the template names the two texts ``{a}``
and ``{b}`` and may add any wording around them (``"Sentence 1: {a}\\nSentence 2: {b}\\n"``).
"""

from __future__ import annotations

import string
from collections.abc import Sequence

from bayeshead.errors import UserInputError

__all__ = ["DEFAULT_PAIR_TEMPLATE", "check_pair_template", "format_pairs"]

DEFAULT_PAIR_TEMPLATE = "{a}\n{b}"


def check_pair_template(template: str) -> str:
    """``template`` if it holds the fields ``{a}`` and ``{b}`` and nothing else to fill."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as err:
        raise UserInputError(f"pair_template {template!r} is not a valid format string ({err}); write e.g. '{{a}}\\n{{b}}'") from None
    if fields != {"a", "b"}:
        raise UserInputError(
            f"pair_template {template!r} must contain the fields {{a}} and {{b}} (the two texts) and no others, "
            f"got {sorted(fields)}; double literal braces as {{{{ and }}}}"
        )
    return template


def format_pairs(texts: Sequence[str], text_pair: Sequence[str], template: str = DEFAULT_PAIR_TEMPLATE) -> list[str]:
    """``template.format(a=texts[i], b=text_pair[i])`` for every i."""
    if len(texts) != len(text_pair):
        raise UserInputError(f"{len(texts)} texts but {len(text_pair)} text_pair entries; give one second text per text")
    check_pair_template(template)
    return [template.format(a=a, b=b) for a, b in zip(texts, text_pair, strict=True)]
