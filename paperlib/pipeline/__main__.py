"""``python -m paperlib.pipeline``: the command line (:mod:`paperlib.pipeline.cli`)."""

import sys

from .cli import main

sys.exit(main())
