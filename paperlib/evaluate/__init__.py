"""Evaluation of the predictions (S4, Q1-Q3).

Modules
-------
``evaluation``
    the one evaluator of Q1 and Q2: tasks, grouped nested CV, read-outs, the information horizon.
``tuning``
    the classifiers, their grids and their tuning on grouped inner folds (the fast path).
``stats``
    the corrected resampled t-test (Nadeau & Bengio, 2003); mean and spread over fold seeds.
``experiments``
    Q1 / Q2 plans and result files.
``timing``
    Q3 runtime measurements.
"""
