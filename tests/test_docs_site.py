"""The documentation builds as a site (Sphinx + MyST, docs/conf.py) without a single warning.

Broken cross-references, links to files outside docs/, pages missing from the toctree, bad
heading levels in included result files and unknown directives are all warnings, and ``-W``
turns them into a failed build.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import myst_parser  # noqa: F401 - the dev extra installs it; missing, the module fails, never skips
import pytest
import sphinx  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    out, doctrees = tmp_path / "html", tmp_path / "doctrees"
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(doctrees), str(ROOT / "docs"), str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, f"sphinx-build failed; warnings:\n{done.stderr[-8000:]}"
    pages = {p.relative_to(out).as_posix() for p in out.rglob("*.html")}
    for page in ("index.html", "results.html", "reference/configuration.html", "reference/cli.html"):
        assert page in pages, sorted(pages)
