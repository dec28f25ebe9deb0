"""Checks on config values that the section types alone do not make, and config-file readers
that refuse a key written twice (YAML and JSON would silently keep the last one)."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import yaml

from bayeshead.errors import UserInputError

if TYPE_CHECKING:
    from bayeshead.config import ExperimentConfig

__all__ = ["check_values", "DuplicateKeyError", "load_yaml_unique", "load_json_unique"]


class DuplicateKeyError(UserInputError):
    """A mapping in a config file names the same key twice."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping naming the same key twice."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DuplicateKeyError(
                    f"key {key!r} appears twice in one section (lines {seen[key]} and {line}); "
                    "YAML would silently keep only the last, so merge the two"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml_unique(text: str) -> Any:
    """``yaml.safe_load`` that raises :class:`DuplicateKeyError` on a repeated key."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 -- a SafeLoader subclass


def load_json_unique(text: str) -> Any:
    """``json.loads`` that raises :class:`DuplicateKeyError` on a repeated key."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in items]
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        if repeated:
            raise DuplicateKeyError(f"key(s) {repeated} appear twice in one object; JSON would keep only the last")
        return dict(items)

    return json.loads(text, object_pairs_hook=pairs)


def _walk(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _walk(item, f"{where}[{i}]")
    else:
        yield where, value


def check_values(config: ExperimentConfig) -> None:
    """Raise ``ValueError`` naming the field for a NaN or infinite number anywhere, ``betas``
    outside [0, 1), or an empty ``adapter.target_modules``."""
    data = config.model_dump(mode="python")
    for where, value in _walk(data, ""):
        if isinstance(value, float) and not math.isfinite(value):
            raise UserInputError(f"{where} is {value}; it must be a finite number")
    for section in ("optimizer", "adapter", "head", "method"):
        betas = (data.get(section) or {}).get("betas")
        if betas is not None:
            bad = [b for b in betas if not 0.0 <= float(b) < 1.0]
            if bad:
                raise UserInputError(
                    f"{section}.betas is {list(betas)}; each beta must be in [0, 1) (e.g. [0.9, 0.999])"
                )
    targets = (data.get("adapter") or {}).get("target_modules")
    if isinstance(targets, (list, tuple)) and not targets:
        raise UserInputError(
            "adapter.target_modules is an empty list, so no layer would be adapted; name modules "
            "(e.g. [query, value]) or use 'all-linear'"
        )
