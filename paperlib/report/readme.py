"""The generated blocks of the README and of ``docs/``: where each one goes, putting them in place,
and the check that the committed pages are up to date.

A block sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` in its page; everything
between the markers is rendered (:mod:`paperlib.report.blocks`) from the committed result files
and from the code's own declarations, never typed by hand::

    python -m paperlib.report            # rewrite every block of README.md and docs/*.md
    python -m paperlib.report --check    # exit 1 if a block is out of date (nothing written)

``tests/test_report.py`` checks that every committed block agrees with what it is rendered from.
The notebooks' headers and the table of notebook parameters in ``docs/profiles.md`` are generated
the same way, by ``python -m paperlib.pipeline --write-headers`` (:mod:`paperlib.notebooks`: they
come from the notebooks and the runner's checks, a later stage than this one).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from .. import files, paths
from . import blocks


@dataclass(frozen=True)
class Block:
    """A generated block: the page (relative to the root), its marker name and its renderer, called
    with the page's folder (and, for the results, the profiles to show: ``per_profile``)."""

    page: str
    name: str
    render: Callable[..., str]
    per_profile: bool = False

    @property
    def start(self) -> str:
        return f"<!-- {self.name}:start -->"

    @property
    def end(self) -> str:
        return f"<!-- {self.name}:end -->"

    @property
    def path(self) -> Path:
        return paths.ROOT / self.page


#: every generated block, page by page
BLOCKS: tuple[Block, ...] = (
    Block("README.md", "results", blocks.results_at_a_glance, per_profile=True),
    Block("docs/results.md", "results", blocks.results_in_full, per_profile=True),
    Block("docs/design.md", "steps", blocks.step_map),
    Block("docs/design.md", "packages", blocks.package_map),
)


def rendered(block: Block, profiles: Iterable[str] | None = None) -> str:
    """The text between ``block``'s markers (with the markers)."""
    base = block.path.parent
    body = block.render(base, profiles) if block.per_profile else block.render(base)
    return f"{block.start}\n{body}{block.end}"


def _split(block: Block, text: str) -> tuple[str, str]:
    if text.count(block.start) != 1 or text.count(block.end) != 1:
        raise ValueError(f"{block.page}: needs exactly one {block.start} ... {block.end} block")
    head, rest = text.split(block.start, 1)
    _, tail = rest.split(block.end, 1)
    return head, tail


def stale(profiles: Iterable[str] | None = None) -> list[Block]:
    """The blocks whose committed text differs from what they render now."""
    out = []
    for block in BLOCKS:
        text = block.path.read_text()
        _split(block, text)
        if rendered(block, profiles) not in text:
            out.append(block)
    return out


def update(profiles: Iterable[str] | None = None) -> list[Block]:
    """Rewrite every block that is out of date; returns those rewritten."""
    changed = []
    for block in BLOCKS:
        text = block.path.read_text()
        head, tail = _split(block, text)
        new = head + rendered(block, profiles) + tail
        if new != text:
            files.atomic_write_text(block.path, new)
            changed.append(block)
    return changed


DESCRIPTION = """\
Rewrites the generated blocks of README.md and docs/*.md from the committed files: the results of
every profile with committed results (results/<profile>/, figures/<profile>/), the pipeline's steps
(paperlib/steps.py) and the package map (paperlib/__init__.py). Each block sits between
<!-- NAME:start --> and <!-- NAME:end --> in its page; nothing else in the pages is touched."""

EPILOG = """\
examples:
  python -m paperlib.report            rewrite every block that is out of date
  python -m paperlib.report --check    exit 1 if a block is out of date (writes nothing)"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paperlib.report", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", action="append", metavar="NAME",
                        help="show only this profile's results (repeatable; default: every profile with "
                             "committed results)")
    parser.add_argument("--check", action="store_true", help="exit 1 if a block is out of date; write nothing")
    args = parser.parse_args(argv)
    if args.check:
        out = stale(args.profile)
        for block in out:
            print(f"{block.page}: block {block.name!r} is out of date (run `python -m paperlib.report`)")
        print("generated blocks are " + ("out of date" if out else "up to date"))
        return 1 if out else 0
    for block in update(args.profile):
        print(f"{block.page}: block {block.name!r} rewritten")
    print("generated blocks are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
