"""``python -m paperlib.report``: the generated blocks of the README and ``docs/`` (:mod:`paperlib.report.readme`)."""

import sys

from .readme import main

sys.exit(main())
