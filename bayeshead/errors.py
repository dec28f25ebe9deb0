"""The package's exception types. Every error bayeshead raises on purpose derives from
:class:`BayesheadError`, so ``except BayesheadError`` catches all of them and nothing else.

* :class:`UserInputError` -- something the user supplied (a file, data, a config value, a
  checkpoint) cannot be used; the message names it and says how to fix it. The CLI prints it on
  one line without a traceback and exits with status 2. Config, registry, data-file,
  serialization and checkpoint errors are all user-input errors.
* :class:`InputTypeError` -- an argument of the wrong type (a string where a list of texts is
  expected, a float where an int is); also a :class:`TypeError`, so ``except TypeError`` still
  catches it, and the CLI prints it on one line with exit status 2 like every BayesheadError.
* :class:`UsageError` -- a command-line invocation that does not fit (two suites, a missing
  option); also printed on one line, exit 2.
* :class:`NotFittedError` -- a head or model used before a fit it needs (predicting with a
  Laplace or temperature head before its post-hoc fit); the message says what to call.

Importing this module imports nothing heavy.
"""

from __future__ import annotations

__all__ = ["BayesheadError", "UserInputError", "InputTypeError", "UsageError", "NotFittedError"]


class BayesheadError(Exception):
    """Root of every exception type bayeshead defines."""


class UserInputError(BayesheadError, ValueError):
    """Something the user gave cannot be used; the message names it and says how to fix it."""


class InputTypeError(BayesheadError, TypeError):
    """An argument of the wrong type; the message names the argument, what it got and what it takes."""


class UsageError(UserInputError):
    """A command-line invocation that does not fit (conflicting or missing options)."""


class NotFittedError(UserInputError):
    """A head or model was used before a fit it needs; the message names what to call first."""
