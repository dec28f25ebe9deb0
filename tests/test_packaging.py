"""Packaging: the mapped subpackages import from anywhere; no top-level adapters/manifolds."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    # -I: isolated mode, so neither the current directory nor PYTHONPATH is on sys.path.
    return subprocess.run([sys.executable, "-I", "-c", code], cwd=cwd, capture_output=True, text=True)


def test_subpackages_import_from_any_directory(tmp_path):
    result = _python(
        "import bayeshead, bayeshead.adapters, bayeshead.manifolds;"
        "print(bayeshead.adapters.Adapter.__module__, bayeshead.manifolds.group_by_geometry.__module__)",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["bayeshead.adapters.base", "bayeshead.manifolds.geometry"]


def test_adapters_and_manifolds_are_not_top_level_names(tmp_path):
    for name in ("adapters", "manifolds"):
        result = _python(f"import {name}", tmp_path)
        assert result.returncode != 0 and "No module named" in result.stderr, name


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = config["package-dir"]
    found = set()
    for package, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *relative.parts]))
    assert found == listed, f"add to or remove from pyproject packages: {sorted(found ^ listed)}"
