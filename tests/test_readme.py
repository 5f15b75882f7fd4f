"""The README and the pages of ``docs/`` hold what they promise: every Python code block runs, as a
reader would paste it, in a fresh interpreter; every relative link and anchor between the pages
resolves; the README stays short; every page of ``docs/`` opens with the task it serves.

A block that cannot run here (a cluster, a GPU, a dataset that is not on the machine) says so in its
first line, which this test recognises and reports as the reason it does not run it::

    # not run by tests/test_readme.py: <why>
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from paperlib import paths

README = paths.CODE / "README.md"
DOCS = paths.CODE / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
NOT_RUN = "# not run by tests/test_readme.py:"
#: the most lines the README may have
README_MAX_LINES = 200


def _name(page: Path) -> str:
    return page.relative_to(paths.CODE).as_posix()


def python_blocks() -> list[tuple[str, int, str]]:
    """``(page, line number, code)`` of every fenced ``python`` block of the README and of ``docs/``."""
    out = []
    for page in PAGES:
        text = page.read_text()
        out += [(_name(page), text[:m.start()].count("\n") + 1, m.group(1))
                for m in re.finditer(r"^```python\n(.*?)^```$", text, flags=re.M | re.S)]
    return out


BLOCKS = python_blocks()


def test_the_pages_have_python_blocks():
    assert len(BLOCKS) >= 3


@pytest.mark.slow  # the blocks build and train networks: seconds to a minute each
@pytest.mark.parametrize("page,line,code", BLOCKS, ids=[f"{p}:line{n}" for p, n, _ in BLOCKS])
def test_block_runs(page, line, code, tmp_path):
    first = code.splitlines()[0] if code.strip() else ""
    if first.startswith(NOT_RUN):
        reason = first[len(NOT_RUN):].strip()
        assert reason, f"{page} line {line}: a block that is not run must say why"
        pytest.skip(f"{page} line {line}: {reason}")
    env = {k: v for k, v in os.environ.items() if k not in {"PAPERLIB_ROOT"}}
    env["PYTHONPATH"] = os.pathsep.join([str(paths.CODE), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    env["PAPERLIB_QUIET"] = "1"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, f"{page} line {line}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"


# --------------------------------------------------------------------------- links and anchors
def _prose(text: str) -> str:
    """``text`` without fenced code blocks and inline code (links there are not links)."""
    text = re.sub(r"^```.*?^```$", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of every heading of ``page`` (a repeated heading gets ``-1``, ``-2``, ... as on GitHub)."""
    seen: dict[str, int] = {}
    out = set()
    for m in re.finditer(r"^#{1,6} (.+)$", re.sub(r"^```.*?^```$", "", page.read_text(), flags=re.M | re.S),
                         flags=re.M):
        a = anchor(m.group(1))
        out.add(a if a not in seen else f"{a}-{seen[a]}")
        seen[a] = seen.get(a, 0) + 1
    return out


def links(page: Path) -> list[str]:
    """Every relative link and image target of ``page`` (web addresses left out)."""
    targets = re.findall(r"\]\(([^)\s]+)\)", _prose(page.read_text()))
    return [t for t in targets if not re.match(r"^[a-z]+:", t)]


def test_anchor_follows_github():
    assert anchor("Check: `make verify`") == "check-make-verify"
    assert anchor("Analysing checkpoints you already have (your own runs, the Model Zoos)") == \
        "analysing-checkpoints-you-already-have-your-own-runs-the-model-zoos"
    assert anchor("The `default` profile") == "the-default-profile"


@pytest.mark.parametrize("page", PAGES, ids=[_name(p) for p in PAGES])
def test_every_relative_link_and_anchor_resolves(page):
    bad = []
    for target in links(page):
        path, _, frag = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: {path} does not exist")
        elif frag and dest.suffix == ".md" and frag not in anchors(dest):
            bad.append(f"{target}: no heading with anchor #{frag} in {_name(dest)}")
    assert not bad, f"{_name(page)}:\n" + "\n".join(bad)


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in links(README)}
    missing = [_name(p) for p in PAGES[1:] if p.resolve() not in linked]
    assert not missing, f"README.md does not link to {missing}"


def test_the_readme_is_short():
    n = len(README.read_text().splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines, more than {README_MAX_LINES}: move detail to docs/"


@pytest.mark.parametrize("page", PAGES[1:], ids=[_name(p) for p in PAGES[1:]])
def test_every_docs_page_opens_with_its_task(page):
    paragraphs = [p for p in page.read_text().split("\n\n") if p.strip()]
    assert paragraphs[0].startswith("# "), f"{_name(page)}: no title"
    body = [p for p in paragraphs[1:] if not p.startswith("[README]")]  # the navigation line
    assert body and body[0].startswith("**Task:"), f"{_name(page)}: the first paragraph must state the task"
