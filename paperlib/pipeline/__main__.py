"""``python -m paperlib.pipeline``: the command line of the runner (:mod:`paperlib.pipeline.runner`)."""

import sys

from .runner import main

sys.exit(main())
