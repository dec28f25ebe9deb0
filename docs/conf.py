"""Sphinx configuration of the bayeshead documentation site (MyST markdown, built-in theme).

    python -m sphinx -W --keep-going -b html docs docs/_build/html

``tests/test_docs_site.py`` runs the same build and fails on any warning.
``docs/gen_reference.py`` rewrites the generated pages under ``docs/reference/``.
"""

from __future__ import annotations

import importlib.metadata

project = "bayeshead"
author = "bayeshead contributors"
copyright = "bayeshead contributors"
try:
    release = importlib.metadata.version("bayeshead")
except importlib.metadata.PackageNotFoundError:  # building from a checkout that is not installed
    release = ""
version = release

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
root_doc = "index"
# _build: the default output folder; gen_reference.py is a script, not a page.
exclude_patterns = ["_build"]

myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = f"bayeshead {release}".strip()
html_theme_options = {
    "description": "Honest uncertainty for fine-tuned transformers",
    "fixed_sidebar": True,
}
html_show_sourcelink = False
