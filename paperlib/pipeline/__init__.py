"""The headless runner of the declared steps (:mod:`paperlib.steps`): ``python -m paperlib.pipeline``.

Modules
-------
``parameters``
    the notebooks' ``parameters`` cells, typed and range-checked (:data:`PARAMETERS`).
``inputs``
    every input of a step present and non-empty before it runs, every output after.
``checks``
    what the populations must allow: a step with nothing to do skipped (05_q2 without transfers),
    the networks per class against ``n_folds`` right after 01_import, 01_import's warnings.
``manifest``
    provenance: ``results/<profile>/manifest.json``.
``kernel``
    the kernels' environment and sockets; SIGTERM and SIGHUP as interruptions.
``runner``
    :func:`run`: the selected notebooks in order, with papermill.
``cli``
    the command line (``__main__`` calls :func:`main`).
"""

from ..steps import STEP_NAMES, STEPS
from .cli import main
from .inputs import MissingDatasetError, MissingInputError, check_inputs, require_inputs, steps_for
from .parameters import PARAMETERS, ParameterError, check_parameters, declared_parameters
from .runner import preflight, run

__all__ = ["STEP_NAMES", "STEPS", "main", "MissingDatasetError", "MissingInputError", "check_inputs", "require_inputs",
           "steps_for", "PARAMETERS", "ParameterError", "check_parameters", "declared_parameters", "preflight", "run"]
