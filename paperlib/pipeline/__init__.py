"""The declared steps and the headless runner: ``python -m paperlib.pipeline``.

Modules
-------
``runner``
    the steps, parameter and input checks, the manifest and the runner.
"""

from .runner import STEP_NAMES, STEPS, check_parameters, require_inputs

__all__ = ["STEP_NAMES", "STEPS", "check_parameters", "require_inputs"]
