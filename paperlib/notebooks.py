"""The committed notebooks as JupyterLab writes them, and their generated headers.

**Committed as JupyterLab 4 writes them.** Opening a notebook in JupyterLab connects a kernel,
which sets the notebook's ``kernelspec`` and ``language_info`` to the kernel's own; saving writes
the notebook with :func:`nbformat.write` (keys sorted, one-space indent). The committed
notebooks carry exactly that metadata (:data:`KERNELSPEC`, :data:`LANGUAGE_INFO`), written the
same way, so that opening and saving one changes nothing but the outputs and
``language_info.version`` (the reader's Python). Both are removed again by the ``nbstripout``
git filter that ``make lab`` configures (:data:`NBSTRIPOUT_ARGS`; ``.gitattributes`` applies it
to ``notebooks/*.ipynb``), so ``git status`` stays clean. :func:`jupyterlab_roundtrip` is that
open-and-save, for the tests; :func:`normalise` writes a notebook in its committed form.

**Headers generated from the pipeline.** The first Markdown cell of every notebook ends with
a block, generated from :data:`paperlib.steps.STEPS`, that says what the notebook reads
(and which step makes it) and which committed files running it rewrites::

    python -m paperlib.pipeline --write-headers     # rewrite the blocks (and normalise)

:func:`header_problems` lists the notebooks whose block is out of date (a test calls it).

**The parameters table.** The same command rewrites the table of every notebook parameter in
``docs/profiles.md`` (between ``<!-- parameters:start -->`` and ``<!-- parameters:end -->``), from
the notebooks' ``parameters`` cells and the ranges the runner checks
(:data:`paperlib.pipeline.parameters.PARAMETERS`); :func:`header_problems` reports it when stale.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any, Iterable

import nbformat

from . import files, paths

#: ``kernelspec`` as JupyterLab 4 writes it for ipykernel's ``python3`` kernel.
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
#: ``language_info`` as ipykernel reports it, without ``version`` (the reader's Python, which the
#: git filter removes).
LANGUAGE_INFO = {
    "codemirror_mode": {"name": "ipython", "version": 3},
    "file_extension": ".py",
    "mimetype": "text/x-python",
    "name": "python",
    "nbconvert_exporter": "python",
    "pygments_lexer": "ipython3",
}
#: Arguments of the ``nbstripout`` clean filter (``make lab`` configures it): outputs and execution
#: counts go, cell ids stay, and so does every metadata key JupyterLab writes except the
#: Python version.
NBSTRIPOUT_ARGS = ("--keep-id", "--extra-keys", "metadata.language_info.version")

#: First line of the generated block in the first Markdown cell; everything after it is generated.
HEADER_MARK = "<!-- inputs and outputs: generated from paperlib.steps.STEPS by " \
              "`python -m paperlib.pipeline --write-headers`; do not edit below -->"
#: The profile whose results are committed.
COMMITTED_PROFILE = "default"


# --------------------------------------------------------------------------- JupyterLab's round trip
def _file_text(nb: nbformat.NotebookNode) -> str:
    """What :func:`nbformat.write` puts in a file (as JupyterLab's server and nbstripout write it):
    ``nbformat.writes`` and a final newline."""
    text = nbformat.writes(nb, version=nbformat.NO_CONVERT)
    return text if text.endswith("\n") else text + "\n"


def jupyterlab_metadata(python_version: str | None = None) -> dict[str, Any]:
    """The notebook metadata JupyterLab writes once a ``python3`` kernel of ``python_version`` is connected."""
    info = copy.deepcopy(LANGUAGE_INFO)
    if python_version is not None:
        info["version"] = python_version
    return {"kernelspec": dict(KERNELSPEC), "language_info": info}


def jupyterlab_roundtrip(text: str, python_version: str | None = None) -> str:
    """What opening ``text`` (a notebook file) in JupyterLab 4 and saving it writes.

    JupyterLab reads the file with nbformat (as version 4, validated), the kernel sets
    ``kernelspec`` and ``language_info``, and the server writes it back with
    ``nbformat.write(nb, version=nbformat.NO_CONVERT)`` (which ends the file with a newline).
    """
    nb = nbformat.reads(text, as_version=4)
    nbformat.validate(nb)
    version = python_version or ".".join(map(str, sys.version_info[:3]))
    nb.metadata.update(jupyterlab_metadata(version))
    return _file_text(nb)


#: What the nbstripout filter removes (its defaults and ours), for :func:`strip_outputs`.
STRIPPED_KEYS = ("metadata.signature", "metadata.widgets", "cell.metadata.collapsed", "cell.metadata.ExecuteTime",
                 "cell.metadata.execution", "cell.metadata.heading_collapsed", "cell.metadata.hidden",
                 "cell.metadata.scrolled", "metadata.language_info.version")


def _pop(d: dict, dotted: str) -> None:
    head, _, rest = dotted.partition(".")
    if rest:
        if isinstance(d.get(head), dict):
            _pop(d[head], rest)
    else:
        d.pop(head, None)


def strip_outputs(nb: dict) -> dict:
    """``nb`` (a notebook as a dict) as the nbstripout filter leaves it: no outputs or execution
    counts, none of :data:`STRIPPED_KEYS`; cell ids kept. ``make lab`` saves ``notebooks/`` this way
    (:class:`paperlib.lab.ContentsManager`), so a saved notebook stays byte-identical to the
    committed one."""
    nb = copy.deepcopy(nb)
    for key in STRIPPED_KEYS:
        namespace, sub = key.split(".", 1)
        if namespace == "metadata":
            _pop(nb.get("metadata", {}), sub)
        else:
            for cell in nb.get("cells", []):
                _pop(cell, sub)
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
    return nb


def strip(text: str) -> str:
    """What the ``nbstripout`` git filter of ``make lab`` makes of ``text`` (needs nbstripout)."""
    from nbstripout import strip_output

    nb = nbformat.reads(text, as_version=nbformat.NO_CONVERT)
    extra = ["metadata.signature", "metadata.widgets", "cell.metadata.collapsed", "cell.metadata.ExecuteTime",
             "cell.metadata.execution", "cell.metadata.heading_collapsed", "cell.metadata.hidden",
             "cell.metadata.scrolled", "metadata.language_info.version"]  # nbstripout's defaults + ours
    nb = strip_output(nb, keep_output=False, keep_count=False, keep_id=True, extra_keys=extra)
    return _file_text(nb)


def committed_form(nb: nbformat.NotebookNode) -> str:
    """``nb`` as committed: no outputs or execution counts, JupyterLab's metadata (no Python version)."""
    nb = copy.deepcopy(nb)
    nb.metadata = nbformat.from_dict({**{k: v for k, v in nb.metadata.items()
                                         if k not in ("kernelspec", "language_info")},
                                      **jupyterlab_metadata()})
    nb.nbformat, nb.nbformat_minor = 4, max(int(nb.get("nbformat_minor", 5)), 5)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.validate(nb)
    return _file_text(nb)


# --------------------------------------------------------------------------- headers
def _show(template: str, arch: str = "<arch>") -> str:
    return template.format(profile=COMMITTED_PROFILE, arch=arch, store=f"results/{COMMITTED_PROFILE}/store")


def _committed(template: str) -> bool:
    return not template.startswith("{store}")


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def header_block(step_name: str) -> str:
    """The generated part of the first Markdown cell of ``step_name``: what it reads, what it rewrites."""
    from .steps import STEPS, get_step, producer

    step = get_step(step_name)
    reads = []
    for inp in step.inputs:
        what = " or ".join(f"`{_show(o.path)}`" for o in (inp, *inp.alternatives))
        if inp.kind == "runs":
            what = f"the run store {what} (not committed)"
        by = producer(inp)
        reads.append(f"{what} (from {by})" if by else what)
    committed = [f"`{_show(o)}`" for o in step.outputs if _committed(o)]
    committed.append(f"its section of `{_show('results/{profile}/metrics.json')}`")
    store = [f"`{_show(o)}`" for o in step.outputs if not _committed(o)]
    lines = [HEADER_MARK, ""]
    if reads:
        lines.append(f"**Reads:** {_join(reads)}. A missing input stops the setup cell before anything is written, "
                     "naming the notebook to run first.")
    else:
        lines.append("**Reads:** no result of another notebook.")
    lines.append("")
    lines.append(f"**Rewrites, with `profile = \"{COMMITTED_PROFILE}\"`, these committed files:** {_join(committed)}"
                 + (f"; and writes the run store {_join(store)} (not committed)" if store else "")
                 + ". Another profile writes under `results/<profile>/` and `figures/<profile>/`, which git ignores."
                 + (" `<arch>`: every population of the profile." if any("{arch}" in o for o in step.outputs)
                    or any("{arch}" in i.path for i in step.inputs) else ""))
    later = [s.name for s in STEPS if any(i.path in step.outputs for i in s.inputs)]
    if later:
        lines += ["", f"**Read by:** {_join(later)}."]
    return "\n".join(lines)


def with_header(source: str, step_name: str) -> str:
    """``source`` (the first Markdown cell) with its generated block replaced by the current one."""
    intro = source.split(HEADER_MARK, 1)[0].rstrip()
    return f"{intro}\n\n{header_block(step_name)}"


def notebook_files(root: Path | None = None) -> list[Path]:
    return sorted((root or paths.NOTEBOOKS).glob("*.ipynb"))


def write_headers(names: Iterable[str] | None = None) -> list[Path]:
    """Regenerate the header block of every notebook (and write it in its committed form); returns those changed."""
    from .steps import STEP_NAMES, notebook_path

    changed = []
    for name in names or STEP_NAMES:
        path = notebook_path(name)
        old = path.read_text(encoding="utf-8")
        nb = nbformat.reads(old, as_version=4)
        first = next(c for c in nb.cells if c.cell_type == "markdown")
        first.source = with_header(first.source, name)
        new = committed_form(nb)
        if new != old:
            files.atomic_write_text(path, new)
            changed.append(path)
    return changed


def header_problems() -> list[str]:
    """The notebooks whose first Markdown cell does not end with the current generated block."""
    from .steps import STEP_NAMES, notebook_path

    out = []
    for name in STEP_NAMES:
        nb = nbformat.read(notebook_path(name), as_version=4)
        first = next((c for c in nb.cells if c.cell_type == "markdown"), None)
        if first is None or first.source != with_header(first.source, name):
            out.append(f"{name}.ipynb: its header is out of date with steps.STEPS "
                       "(run `python -m paperlib.pipeline --write-headers`)")
    problem = parameters_table_problem()
    return out + ([problem] if problem else [])


# --------------------------------------------------------------------------- the parameters table
#: the page that holds the generated table of notebook parameters, and its markers
PARAMETERS_PAGE = "docs/profiles.md"
PARAMETERS_START, PARAMETERS_END = "<!-- parameters:start -->", "<!-- parameters:end -->"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def parameters_table() -> str:
    """Every notebook parameter (``-p name=value``): the notebooks that declare it, its type, default,
    range and what it does, as a Markdown table (one row per distinct declaration)."""
    from .pipeline.parameters import PARAMETERS, declared_parameters
    from .steps import STEP_NAMES

    rows: dict[tuple[str, str, str, str], list[str]] = {}
    for step in STEP_NAMES:
        for name, d in declared_parameters(step).items():
            key = (name, d["type"], repr(d["default"]), d["help"])
            rows.setdefault(key, []).append(step)
    out = ["| parameter | notebooks | type | default | range | what it does |", "|---|---|---|---|---|---|"]
    for (name, type_name, default, help_text), steps in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[1])):
        rng = PARAMETERS[name].describe() if name in PARAMETERS else ""
        out.append(f"| `{name}` | {', '.join(steps)} | {type_name} | `{default}` | {_cell(rng) or '–'} | "
                   f"{_cell(help_text)} |")
    return "\n".join(out) + "\n"


def _with_parameters_table(text: str) -> str:
    if text.count(PARAMETERS_START) != 1 or text.count(PARAMETERS_END) != 1:
        raise ValueError(f"{PARAMETERS_PAGE}: needs exactly one {PARAMETERS_START} ... {PARAMETERS_END} block")
    head, rest = text.split(PARAMETERS_START, 1)
    tail = rest.split(PARAMETERS_END, 1)[1]
    return f"{head}{PARAMETERS_START}\n{parameters_table()}{PARAMETERS_END}{tail}"


def write_parameters_table() -> Path | None:
    """Rewrite the generated parameters table; returns the page if it changed."""
    page = paths.CODE / PARAMETERS_PAGE
    old = page.read_text(encoding="utf-8")
    new = _with_parameters_table(old)
    if new == old:
        return None
    files.atomic_write_text(page, new)
    return page


def parameters_table_problem() -> str | None:
    """Why the committed parameters table is out of date, or None."""
    page = paths.CODE / PARAMETERS_PAGE
    text = page.read_text(encoding="utf-8")
    if _with_parameters_table(text) != text:
        return (f"{PARAMETERS_PAGE}: the parameters table is out of date with the notebooks "
                "(run `python -m paperlib.pipeline --write-headers`)")
    return None
