"""Every command line says in its ``--help`` what it does, with an example, in plain text (no
reStructuredText markup), and the pipeline's lists the built-in profiles apart from the profile
files of imported populations."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from paperlib import paths
from paperlib.pipeline import cli

COMMANDS = {
    "paperlib.pipeline": ["-m", "paperlib.pipeline"],
    "paperlib.verify": ["-m", "paperlib.verify"],
    "paperlib.report": ["-m", "paperlib.report"],
    "paperlib.fingerprint": ["-m", "paperlib.fingerprint"],
    **{name: [f"benchmarks/{name}.py"] for name in ("bench_features", "bench_gemm", "bench_graph", "bench_kernels", "bench_sources",
                                                    "bench_train", "gpu_check", "graph_coverage")},
}
MARKUP = re.compile(r"``|:(func|mod|class|data|meth|attr):`|^\s*\.\. ", re.M)


def test_every_benchmark_script_is_listed():
    scripts = {p.stem for p in (paths.CODE / "benchmarks").glob("*.py")}
    assert scripts <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_says_what_it_does_with_an_example(name):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(paths.CODE), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, *COMMANDS[name], "--help"], cwd=paths.CODE, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    description = text.split("\n\n")[1] if "\n\n" in text else ""
    assert len(description.split()) >= 15, f"{name}: --help does not say what it does:\n{text}"
    assert re.search(r"^examples?:$", text, re.M), f"{name}: --help has no example:\n{text}"
    assert not MARKUP.search(text), f"{name}: --help has reStructuredText markup:\n{text}"


def test_pipeline_help_separates_built_in_from_imported_profiles():
    from paperlib import profile_files
    from paperlib.profiles import PROFILES

    epilog = cli._epilog()
    built_in, _, rest = epilog.partition("profile files of imported populations")
    imported = rest.partition("examples:")[0]
    for name in PROFILES:
        section = imported if profile_files.plan_of(name) is not None else built_in
        assert re.search(rf"^  {re.escape(name)}\s", section, re.M), name
    for name in ("smoke", "default", "paper"):
        assert not re.search(rf"^  {name}\s", imported, re.M)
    for example in sorted((paths.ROOT / "profiles").glob("*.toml")):
        assert f"profiles/{example.name}" in imported
