"""paperlib: the library behind the notebooks that reproduce
"Leveraging the Graph Structure of Neural Network Training Dynamics" (CIKM 2022).

The subpackages follow the pipeline, in its order; each ``__init__`` maps its files. A module imports
only from its own stage, an earlier one, or the shared modules (``tests/test_layout.py``).

==================  ===========================================================
shared
``kernels``         the CPU kernels numpy, scipy and torch run, pinned to one class (x86-64-v3)
``blas``            convolutions and linear layers with every GEMM on the pinned OpenBLAS
``paths``           every path the project reads or writes
``progress``        progress bars, and the runner's side channel for them
``lock``            the exact environment (``requirements-lock.txt``) and whether it is installed
``profile_types``   the fields of a profile (plain dataclasses)
``profile_files``   profile files of imported populations (TOML / JSON)
``profiles``        smoke / default / paper, and the imported ones: plain data every notebook reads
``profiles_fmnist`` fmnist / fmnist-full: Fashion-MNIST, and the zoo-style population's draws
``steps``           the pipeline declared once: every notebook, what it reads and writes
``files/``          every file that passes between steps: ``atomic`` writes, ``tables`` (promised
                    columns, one parser per column), ``records`` (features, metrics.json, ...)
the pipeline
``train/``          01: ``data``, ``device``, ``models``, ``zoo``, ``store``, ``trainer`` (one
                    run), ``populations`` (a profile's runs)
``sources/``        01 (instead of training): imported checkpoints, your own and the zoos'
``graph/``          S1, S2, 02: ``tracing``, ``values`` / ``routing`` / ``flow`` (channel flow),
                    ``plan``, ``rolled``, ``unrolled``, ``sizes``, ``centrality``, ``temporal``
``features/``       S3, 03: ``signatures``, ``sets`` (named feature sets), ``population``
``evaluate/``       S4, 04-06: ``evaluation``, ``tuning``, ``stats``, ``experiments``, ``timing``
``stopping/``       07, beyond the paper: ``predictor``, ``hooks``, ``search``, ``pruning``
``report/``         ``tables``, ``published``, ``render``, ``readings``, ``figures``, ``blocks``,
                    ``readme`` (``python -m paperlib.report``: the generated blocks of the docs)
running it
``pipeline/``       ``python -m paperlib.pipeline``: ``parameters``, ``inputs``, ``manifest``,
                    ``kernel``, ``runner``, ``cli``
``verify``          ``make verify``: the committed results retrained, recomputed and compared
``fingerprint``     the numeric primitives of this CPU against those of the recorded CPUs
``notebooks``       the notebooks' headers (from ``steps``) and their JupyterLab round trip
``lab``             ``make lab``'s contents manager
==================  ===========================================================
"""

__version__ = "0.1.0"

# Before numpy, scipy or torch load (any paperlib module imports them): their CPU kernels are
# chosen from the environment when they load, so the pin must come first (paperlib.kernels).
from . import kernels as _kernels  # noqa: E402

_kernels.pin()
