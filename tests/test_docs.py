"""Every Python block of every page (README.md, docs/*.md) runs, as a user pastes
it, and prints what it says; the API reference lists every public name.

A page's blocks run in order in one fresh process (no 64-bit mode, as in a
user's script; later blocks use the names earlier ones define), once: the site's
build does not execute them. A comment ``# prints TEXT`` after a statement is a
promise: TEXT must appear in the output, or, for ``# prints about X% ...``, a
percentage within one point of X (the exact count may move with XLA's float32
rounding). Pages that train many runs are behind the ``slow`` marker.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

import jaxprop

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
PROMISE = re.compile(r"# prints (.+)$", re.MULTILINE)
ABOUT = re.compile(r"about ([0-9.]+)%")
PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("docs/*.md"))]
#: Pages whose blocks train many runs (seconds of compiles each): run by .ci/run
#: with -m slow. The others run in the default suite.
SLOW = {
    "README.md",
    "docs/custom.md",
    "docs/layers.md",
    "docs/training.md",
    "docs/rules.md",
    "docs/per_example.md",
    "docs/cli.md",
    "docs/curvature.md",
}


def blocks(page: str) -> list[str]:
    return BLOCK.findall((ROOT / page).read_text())


def test_the_pages_have_python_blocks_with_promises():
    assert len(blocks("README.md")) >= 3
    every = [b for page in PAGES for b in blocks(page)]
    assert len(every) >= 15
    assert sum(len(PROMISE.findall(b)) for b in every) >= 15
    assert SLOW <= set(PAGES)


@pytest.mark.parametrize(
    "page",
    [
        pytest.param(p, marks=pytest.mark.slow) if p in SLOW else p
        for p in PAGES
        if blocks(p)
    ],
)
def test_every_block_of_a_page_runs_and_prints_what_it_promises(page, tmp_path):
    code = "\n".join(blocks(page))
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,  # files a block writes land here
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for promise in PROMISE.findall(code):
        about = ABOUT.match(promise)
        if about:
            printed = [float(p) for p in re.findall(r"([0-9.]+)%", done.stdout)]
            assert any(abs(p - float(about[1])) <= 1 for p in printed), (
                promise,
                done.stdout,
            )
        else:
            assert promise.strip() in done.stdout, (promise, done.stdout)


def test_the_api_reference_documents_every_public_name():
    api = (ROOT / "docs" / "api.md").read_text()
    documented = set(
        re.findall(r"(jaxprop(?:\.rules|\.data|\.layers)?\.\w+)$", api, re.M)
    )
    documented |= {f"jaxprop.{n[3:]}" for n in re.findall(r"`(jp\.\w+)`", api)}
    documented |= {f"jaxprop.rules.{n}" for n in re.findall(r"`jp\.rules\.(\w+)`", api)}
    for module in (jaxprop, jaxprop.rules, jaxprop.data, jaxprop.layers):
        public = {
            f"{module.__name__}.{n}"
            for n in dir(module)
            if not n.startswith("_") and not isinstance(getattr(module, n), type(re))
        }
        assert public <= documented, sorted(public - documented)


SHELL = re.compile(r"```bash\n(.*?)```", re.DOTALL)


def command_lines(page: str) -> list[list[str]]:
    """Every ``jaxprop ...`` command of a page's bash blocks, as argv after
    ``jaxprop`` (continuation lines joined, comments and a final ``&`` dropped)."""
    import shlex

    commands = []
    for block in SHELL.findall((ROOT / page).read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[-1:] == ["&"]:  # started in the background
                words.pop()
            if "jaxprop" in words:
                commands.append(words[words.index("jaxprop") + 1 :])
    return commands


COMMANDS = [
    pytest.param(page, argv, id=f"{page}:{' '.join(argv[:2])}-{i}")
    for page in PAGES
    for i, argv in enumerate(command_lines(page))
]


def test_the_pages_show_commands():
    assert len(COMMANDS) >= 10


@pytest.mark.parametrize("page, argv", COMMANDS)
def test_every_command_of_a_page_is_one_the_command_line_takes(page, argv):
    """The bash blocks' commands read files and hosts a test machine does not
    have, so they are not run; each one parses, and a new ``train`` run's
    settings pass the checks a real run makes before it touches data."""
    from jaxprop._cli import make_parser
    from jaxprop._cli.options import TRAIN_FIELDS, config_values, option_names
    from jaxprop._experiment import make_config, study_configs, study_rules

    args = make_parser().parse_args(argv)
    if args.command == "train" and not args.resume and not args.config:
        names = option_names(args, TRAIN_FIELDS)
        values = config_values(args, TRAIN_FIELDS)
        if study_rules(values) is None:
            make_config(values, names=names)
        else:  # several rules: each one's settings
            assert len(study_configs(values, names)) >= 2
