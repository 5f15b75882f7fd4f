"""Every Python code block of the README runs, as a reader would paste it, in a fresh interpreter.

A block that cannot run here (a cluster, a GPU, a dataset that is not on the machine) says so in its
first line, which this test recognises and reports as the reason it does not run it::

    # not run by tests/test_readme.py: <why>
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from paperlib import paths

README = paths.CODE / "README.md"
NOT_RUN = "# not run by tests/test_readme.py:"


def python_blocks() -> list[tuple[int, str]]:
    """``(line number, code)`` of every fenced ``python`` block of the README."""
    text = README.read_text()
    return [(text[:m.start()].count("\n") + 1, m.group(1))
            for m in re.finditer(r"^```python\n(.*?)^```$", text, flags=re.M | re.S)]


BLOCKS = python_blocks()


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 3


@pytest.mark.slow  # the blocks build and train networks: seconds to a minute each
@pytest.mark.parametrize("line,code", BLOCKS, ids=[f"line{n}" for n, _ in BLOCKS])
def test_readme_block_runs(line, code, tmp_path):
    first = code.splitlines()[0] if code.strip() else ""
    if first.startswith(NOT_RUN):
        reason = first[len(NOT_RUN):].strip()
        assert reason, f"README.md line {line}: a block that is not run must say why"
        pytest.skip(f"README.md line {line}: {reason}")
    env = {k: v for k, v in os.environ.items() if k not in {"PAPERLIB_ROOT"}}
    env["PYTHONPATH"] = os.pathsep.join([str(paths.CODE), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    env["PAPERLIB_QUIET"] = "1"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, f"README.md line {line}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
