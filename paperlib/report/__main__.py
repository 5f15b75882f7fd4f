"""``python -m paperlib.report``: the README's results block (:mod:`paperlib.report.readme`)."""

import sys

from .readme import main

sys.exit(main())
