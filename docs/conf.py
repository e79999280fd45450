"""Sphinx configuration of jaxprop's documentation site.

Pages are MyST Markdown; the API reference is autodoc over the public names
(``jaxprop.X``, ``jaxprop.rules.X``, ``jaxprop.data.X``) and their Google-style
docstrings. Nothing is executed at build time: every Python block of every page
runs in the tests (tests/test_docs.py), once.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jaxprop  # noqa: E402

project = "jaxprop"
author = "the jaxprop authors"
release = version = jaxprop.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]

# MyST: $…$ maths, ::: fences, and anchors for the pages' section headings.
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

# Google-style docstrings.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# One "Parameters" list: an entry may name several arguments (x, y: ...).
napoleon_use_param = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"

html_theme = "furo"
html_title = f"jaxprop {release}"


NAMES_GO_ON = re.compile(r"\s*\w+(, \w+)*,\s*")


def _plain_text_docstrings(app, what, name, obj, options, lines):
    """Let the docstrings' plain-text maths through reST, before napoleon.

    The docstrings write absolute values and norms as |x| and trailing axes as
    (batch, *runs); reST would read a substitution and the start of emphasis.
    Both are escaped outside ``literals``, doctest lines and :: blocks (no
    docstring uses reST substitutions or emphasis). An ``Args:`` entry naming
    several arguments over two lines (``net, x, y, ...,`` then ``eval_every:
    ...``) is joined onto one line, the form napoleon reads.
    """
    out, literal_indent = [], None
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if literal_indent is not None and line.strip() and indent <= literal_indent:
            literal_indent = None
        if literal_indent is None and not line.lstrip().startswith((">>>", "...")):
            parts = line.split("``")
            parts[::2] = [
                re.sub(r"(?<![*\\])\*(?!\*)", r"\\*", p.replace("|", r"\|"))
                for p in parts[::2]
            ]
            escaped = "``".join(parts)
        else:
            escaped = line
        if line.rstrip().endswith("::"):
            literal_indent = indent
        if out and NAMES_GO_ON.fullmatch(out[-1]):
            out[-1] = out[-1].rstrip() + " " + escaped.lstrip()
        else:
            out.append(escaped)
    lines[:] = out


def setup(app):
    # Before napoleon's handler (priority 500), on the docstring as written.
    app.connect("autodoc-process-docstring", _plain_text_docstrings, priority=400)
