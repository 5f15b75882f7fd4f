"""Evaluation of the predictions (S4, Q1-Q3).

Modules
-------
``evaluation``
    the one evaluator of Q1 and Q2: grouped nested CV, tuned classifiers.
``stats``
    the corrected resampled t-test (Nadeau & Bengio, 2003).
``experiments``
    Q1 / Q2 plans and result files.
``timing``
    Q3 runtime measurements.
"""
