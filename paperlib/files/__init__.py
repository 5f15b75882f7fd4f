"""Every file that passes between the steps of the pipeline, read and written here.

The steps (notebooks 01-07) hand each other files under ``results/<profile>/``. This module is
the only code that reads or writes them; the steps call it with data frames and arrays. It
keeps three promises:

* **Atomic writes.** Every file is written to a temporary file beside it and moved into place
  (``os.replace``), with the permissions of an ordinary ``open()`` (``0o644`` under the usual
  umask: a group sharing a results folder or a run store can read it). A killed process
  leaves the old file or the new one, never half of one.
* **Columns.** Each table promises its columns (:data:`TABLES`, in order). A writer refuses
  a frame that lacks one of them, a reader refuses a file that lacks one, and both name the
  file; a missing file is an error that names the notebook that writes it.
* **One parser per column.** Booleans (``diverged``, ``single_class``, ``best``, ...) are read by
  :func:`parse_bool`; whether a run diverged by :func:`diverged`; text columns that may be
  empty (``paper_note``, ``reason``, ...) come back as ``""``, never NaN.

=============================  ========  =================================================
file (under results/<p>/)      written   read by
=============================  ========  =================================================
``runs.csv``                   01        02, 03, 06, 07, Table 1
``snapshots.csv``              01        ``make verify`` (:mod:`paperlib.verify`)
``import_skipped.csv``         01i       the import's summary (networks not imported, why)
``imported.csv``               01i       the import's summary (what each network's horizon holds)
``overrides.json``             01        every later step (:func:`read_overrides`)
``table1.csv``                 01        the results pages
``centralities.csv``           02        06 (cross-check of the timings)
``graph_sizes.csv``            02        the README
``features.csv``               03        04, 05 (which feature sets are there)
``features/<arch>.npz``        03        04, 05, 07 (:func:`write_features`)
``q1.csv``, ``q1_skipped.csv`` 04        Table 2, Fig. 3, 06 (t needed), readings
``table2.csv``                 04        readings, the results pages
``q2.csv``, ``q2_skipped.csv`` 05        Fig. 4, readings
``q3.csv``                     06        Fig. 5, readings
``q3_snapshots/<arch>.pt``     06        06 on a fresh clone (:func:`write_q3_snapshot`)
``early_stopping.csv``         07        the results pages
``metrics.json``               01-07     the results pages (:func:`update_metrics`)
``timings/<table>``            01-03     06, the README (:data:`Table.timings`)
=============================  ========  =================================================

**Numbers apart from seconds.** A table holds only what the computation decides, so that a rerun
that reproduces it writes the same bytes. Where a step also measures wall-clock time, the
seconds go to ``timings/<table>`` beside it, keyed by the table's key columns
(:attr:`Table.timings`, :attr:`Table.key`): :func:`write_table` splits the frame, and
:func:`read_table` joins the seconds back (NaN when the timings file is not there). Steps 04, 05
and 07 record no seconds but their duration in the manifest. ``q3.csv`` (and Fig. 5) *are* a
measurement of the machine that ran 06.

01i is ``01_import``, which makes ``runs.csv`` and the run store of an imported profile instead of
01 (:mod:`paperlib.sources`).

The run store (one directory per trained network: snapshots, checkpoints, cached
centralities) is :mod:`paperlib.train.store`; it writes with the same primitives. The paper's own
numbers, transcribed, are read by :func:`read_published`.

Modules
-------
``atomic``
    atomic writes, JSON and ``.npz``; :class:`CorruptFileError`.
``tables``
    the tables (:data:`TABLES`: promised columns, timings), one parser per column, their reader and writer.
``records``
    feature arrays, Q3 snapshots, ``overrides.json``, ``metrics.json``, ``manifest.json``, the paper's numbers.
"""

from .atomic import (  # noqa: F401
    CorruptFileError, atomic_write_bytes, atomic_write_text, atomic_write_json, read_json, save_npz, load_npz
)
from .tables import (  # noqa: F401
    parse_bool, diverged, parse_text, Table, RUN_COLUMNS, SNAPSHOT_COLUMNS, CENTRALITY_COLUMNS,
    GRAPH_SIZE_COLUMNS, FEATURE_INDEX_COLUMNS, Q1_COLUMNS, Q2_COLUMNS, SKIP_COLUMNS, Q3_COLUMNS, TABLE1_COLUMNS,
    PAIRED_BASELINES, TABLE2_COLUMNS, NOISE_FLOOR_COLUMNS, EARLY_STOPPING_COLUMNS, IMPORT_SKIPPED_COLUMNS, IMPORTED_COLUMNS, TABLES,
    result_path, write_table, timings_path, read_table, read_cells, read_table_or_none, read_source_csv,
    write_source_csv,
    runs_path, read_runs, skipped_reasons
)
from .records import (  # noqa: F401
    FEATURES_FORMAT_KEYS, features_path, write_features, read_features, Q3_SNAPSHOT_FORMAT, q3_snapshot_path,
    write_q3_snapshot, read_q3_snapshot, write_overrides, read_overrides, read_metrics, update_metrics,
    read_published, published_claims, read_manifest
)
