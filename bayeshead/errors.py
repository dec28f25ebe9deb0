"""Exceptions about what the user supplied (files, data, checkpoints): the CLI prints them
without a traceback and exits with status 2. Importing this module imports nothing heavy."""

from __future__ import annotations

__all__ = ["UserInputError"]


class UserInputError(ValueError):
    """Something the user gave cannot be used; the message names it and says how to fix it."""
