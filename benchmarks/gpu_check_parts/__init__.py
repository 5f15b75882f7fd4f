"""The parts of ``benchmarks/gpu_check.py`` (its command line), one module per part of the check.

``common``      constants, utilities (JSON, hashes, the environment, the card) and a part's record
``training``    part 1, the CUDA tests; part 2, the training benchmark and the projected wall time
``on_device``   part 3, determinism on the device; part 4, the shrunk ``paper`` profile end to end
``report``      the parent: one process per part within the budget, ``gpu_check.json`` and ``.md``
"""
