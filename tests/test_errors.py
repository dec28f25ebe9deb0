"""Every exception type bayeshead defines derives from one root, BayesheadError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from bayeshead.errors import BayesheadError, UsageError, UserInputError


def _modules():
    import bayeshead.adapters
    import bayeshead.manifolds

    for package in (bayeshead, bayeshead.adapters, bayeshead.manifolds):
        yield package
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if not info.name.endswith("__main__"):
                yield importlib.import_module(info.name)


def test_every_package_exception_has_the_one_root():
    found = {}
    for module in _modules():
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                found[f"{module.__name__}.{name}"] = obj
    assert len(found) >= 10, sorted(found)
    strays = sorted(name for name, cls in found.items() if not issubclass(cls, BayesheadError))
    assert not strays, f"exception types outside BayesheadError: {strays}"


def test_usage_errors_are_user_input_errors_and_value_errors():
    assert issubclass(UsageError, UserInputError) and issubclass(UserInputError, ValueError)
    from bayeshead.cli.main import UsageError as from_cli

    assert from_cli is UsageError  # kept importable where it used to live


def _package_sources():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for folder in ("bayeshead", "adapters", "manifolds"):
        yield from sorted((root / folder).rglob("*.py"))


def test_no_builtin_value_or_type_error_is_raised_by_the_package():
    """Every ``raise`` of a ValueError/TypeError goes through a BayesheadError subclass, so
    ``except bayeshead.BayesheadError`` and the CLI's exit-2 promise cover every user mistake."""
    import ast

    offenders = []
    for path in _package_sources():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id in {"ValueError", "TypeError"}:
                offenders.append(f"{path.name}:{node.lineno} raise {exc.id}")
    assert not offenders, offenders


def test_input_type_errors_are_type_errors_under_the_root():
    from bayeshead.errors import InputTypeError

    assert issubclass(InputTypeError, BayesheadError) and issubclass(InputTypeError, TypeError)
