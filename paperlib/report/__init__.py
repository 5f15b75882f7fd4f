"""Reporting: tables, figures, readings and the README's results block, all read from the result files.

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
``readme``
    the README's results block: ``python -m paperlib.report``.
"""
