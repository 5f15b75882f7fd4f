"""Populations of checkpoints that exist already: your own runs and two public zoos, imported so that
steps 02-07 run on them unchanged.

A profile file (TOML or JSON) names the sources; ``01_import`` (instead of ``01_train``) writes the
run store and ``runs.csv`` that ``01_train`` would have written. See ``docs/own-runs.md``,
"Analysing checkpoints you already have".

``core``          what a source hands the importer; the named errors of bad input
``importer``      the one import path: :func:`~paperlib.sources.importer.import_profile`
``own``           your own runs: one folder per run (``source = "runs"``)
``raytune``       Ray Tune experiment folders, the Model Zoos' raw layout (``source = "raytune"``)
``smallcnnzoo``   the Small CNN Zoo's ``weights.npy`` / ``metrics.csv.gz`` / ``layout.csv``
``zoo_export``    the other way: a trained population written in the Small CNN Zoo's layout

The profile files themselves are read by :mod:`paperlib.profile_files` (free of torch); the zoos'
architectures are models of ours, :mod:`paperlib.train.zoo`. Nothing is imported here.
"""
