"""The pipeline, declared once: every step (notebook), the files it reads and the files it writes.

:data:`STEPS` lists every notebook with the files it reads (``inputs``) and
writes (``outputs``); the step that makes an input is the one that declares it as an output.
``{profile}`` stands for the profile's name, ``{arch}`` for every population of the (effective)
profile, ``{store}`` for the profile's run store (:func:`paperlib.paths.store_dir`).

``python -m paperlib.pipeline --list`` prints it; :mod:`paperlib.pipeline` runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import paths
from .profile_files import plan_of


@dataclass(frozen=True)
class Input:
    """A file (or the run store) a step reads.

    ``path`` is a template relative to the project root (``{profile}``, ``{arch}``, ``{store}``).
    ``kind`` is ``"file"`` (must exist and be non-empty; a CSV must have at least one data row)
    or ``"runs"`` (every network listed in ``results/<profile>/runs.csv`` has a finished run in
    the store). ``alternatives`` are other inputs any one of which also satisfies this one.
    ``made_by`` overrides the producer named in messages (else: the step that declares ``path``
    as an output).
    """

    path: str
    kind: str = "file"
    alternatives: tuple["Input", ...] = ()
    made_by: str | None = None


@dataclass(frozen=True)
class Step:
    """One notebook of the pipeline: the files it reads and the files it writes (templates)."""

    name: str
    title: str
    outputs: tuple[str, ...]
    inputs: tuple[Input, ...] = ()
    populations: str = "any"  # "trained": profiles of paperlib.profiles; "imported": profile files; "any"

    def applies_to(self, profile: str) -> bool:
        """Whether this step runs for ``profile`` (01_train for trained profiles, 01_import for imported ones)."""
        if self.populations == "any":
            return True
        return (plan_of(profile) is not None) == (self.populations == "imported")

    @property
    def notebook(self) -> Path:
        return notebook_path(self.name)


R = "results/{profile}/"


F = "figures/{profile}/"


STORE_RUNS = Input("{store}/runs", kind="runs")


RUNS = Input(R + "runs.csv")


FEATURES = (Input(R + "features.csv"), Input(R + "features/{arch}.npz"))


STEPS: tuple[Step, ...] = (
    Step("01_train", "Train populations, snapshot every epoch; Table 1",
         (R + "runs.csv", R + "snapshots.csv", R + "timings/runs.csv", R + "table1.csv", R + "table1.md",
          R + "table1_pooled.csv", R + "overrides.json", "{store}/runs"),
         populations="trained"),
    Step("01_import", "Import existing checkpoints (a profile file) instead of training; Table 1",
         (R + "runs.csv", R + "timings/runs.csv", R + "table1.csv", R + "table1.md", R + "overrides.json",
          "{store}/runs", R + "import_skipped.csv", R + "imported.csv", R + "timings/imported.csv"),
         populations="imported"),
    Step("02_graph", "Rolled and unrolled graphs, centralities of every snapshot (S1, S2)",
         (R + "centralities.csv", R + "timings/centralities.csv", R + "graph_sizes.csv", F + "fig1.png",
          F + "fig1.pdf"),
         (RUNS, STORE_RUNS)),
    Step("03_features", "Graph signatures, baselines and the learning-curve baseline (S3)",
         (R + "features.csv", R + "timings/features.csv", R + "features/{arch}.npz"),
         (RUNS, STORE_RUNS, Input(R + "centralities.csv"))),
    Step("04_q1", "Q1: performance prediction per architecture; Table 2, Figure 3",
         (R + "q1.csv", R + "q1_skipped.csv", R + "table2.csv", R + "table2.md", R + "table2.tex",
          R + "noise_floor.csv", F + "fig3.png",
          F + "fig3.pdf"),
         (RUNS, *FEATURES)),
    Step("05_q2", "Q2: generalising to unseen depths, architectures and widths; Figure 4",
         (R + "q2.csv", R + "q2_skipped.csv", F + "fig4.png", F + "fig4.pdf"),
         (RUNS, *FEATURES, Input(R + "q1.csv"))),
    Step("06_q3", "Q3: cost of the graph features next to training; Figure 5",
         (R + "q3.csv", R + "q3_snapshots/{arch}.pt", F + "fig5.png", F + "fig5.pdf"),
         (RUNS, Input(R + "q1.csv"), Input(R + "centralities.csv"), Input(R + "timings/runs.csv"),
          Input(R + "timings/centralities.csv"),
          Input(R + "q3_snapshots/{arch}.pt", alternatives=(STORE_RUNS,),
                made_by="06_q3 itself, from the run store that 01_train makes"))),
    Step("07_early_stopping", "Beyond the paper: stopping bad runs early, and what it saves",
         (R + "early_stopping.csv", R + "early_stopping.md", F + "fig_early_stopping.png",
          F + "fig_early_stopping.pdf", R + "predictors/{arch}.both.json", R + "predictors/{arch}.both.npz"),
         (RUNS, *FEATURES)),
)


STEP_NAMES = tuple(s.name for s in STEPS)



def notebook_path(name: str) -> Path:
    return paths.NOTEBOOKS / f"{name}.ipynb"


def get_step(name: str) -> Step:
    for step in STEPS:
        if step.name == name:
            return step
    raise KeyError(f"unknown step {name!r}; the steps are {list(STEP_NAMES)}")


def producer(inp: Input, profile: str | None = None) -> str | None:
    """The step that makes input ``inp`` (for ``profile``: 01_import instead of 01_train for an imported one)."""
    if inp.made_by:
        return inp.made_by.replace("01_train", "01_import") if profile and get_step("01_import").applies_to(
            profile) else inp.made_by
    for step in STEPS:
        if inp.path in step.outputs and (profile is None or step.applies_to(profile)):
            return step.name
    return None

