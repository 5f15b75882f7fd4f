"""Reporting: tables, figures, readings and the generated blocks of the README and ``docs/``, all read
from the result files and the code's own declarations.

Modules
-------
``tables``
    tables 1 and 2 as tidy frames, from the result files.
``published``
    the paper's numbers and claims (``results/published/``) beside ours.
``render``
    labels, the printed tables, Markdown / LaTeX.
``readings``
    plain-language readings computed from the result files.
``replicates``
    population replicates: Table 2, the figures and the readings across them, the noise floor.
``figures``
    figures, one shared style.
``blocks``
    the generated blocks: the results at a glance and in full, the step map, the package map.
``readme``
    where each block goes, putting them in place and checking them: ``python -m paperlib.report``.
"""
