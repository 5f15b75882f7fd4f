"""Progress of the long loops: on the runner's terminal, never in an executed notebook.

A loop reports through :class:`Progress` (``with Progress("networks", {"LeNet": 64, ...}, unit="runs")
as bar: ... bar.update("LeNet")``), which shows it in one of three ways:

under the runner
    ``python -m paperlib.pipeline`` sets ``PAPERLIB_PROGRESS`` to a file of its own, outside the
    project, before it starts a kernel. Every event is appended to that file as one JSON line
    (:func:`event`); the runner follows the file (:class:`Follower`) and prints each event as one
    line on its own stderr (:func:`format_event`), so the terminal shows runs done out of total,
    per population, with the time left. Nothing goes to the kernel's output streams: what a kernel
    writes there, to ``sys.stdout``/``sys.stderr`` or to the file descriptors themselves (ipykernel
    forwards those too), is exactly what papermill stores in the executed notebook, and papermill's
    ``log_output``/``stdout_file``/``stderr_file`` only copy those same stream outputs.
interactive, not quiet (JupyterLab, a script)
    a ``tqdm.auto`` bar, as before.
quiet (``PAPERLIB_QUIET=1``, or under pytest)
    no bar.

When no bar was shown (under the runner or quiet), closing prints one summary line to stdout, the
line an executed notebook keeps: ``networks: 384 runs in 8:55 (LeNet 64, AlexNet 64, ...)``.

The estimate of the time left is the rate so far: for all items, seconds since the first item
finished per item finished after it (the first carries the start-up of workers and data); for one
group (a population), seconds since the loop turned to it (the last item of another group before
it) per item of it finished. Items done before the loop started (``done=``: finished runs that
are skipped) do not count. The overall estimate assumes the items still to come cost what the
finished ones did; populations of larger networks come later in every profile, so while the
first populations train it runs short (measured on the default profile: ~4:19 left after 4:23,
when 9 minutes were left). The population's own estimate does not mix costs.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Mapping, TextIO

ENV = "PAPERLIB_PROGRESS"
#: seconds between two events of one loop written to the progress file (first, group end and last always)
WRITE_EVERY = 1.0
#: seconds between two lines of one loop printed by the runner (group ends and the last always)
PRINT_EVERY = 10.0


def quiet() -> bool:
    """No progress bars: ``PAPERLIB_QUIET`` set (not ``0``) or running under pytest."""
    return os.environ.get("PAPERLIB_QUIET", "") not in {"", "0"} or "PYTEST_CURRENT_TEST" in os.environ


def clock(seconds: float | None) -> str:
    """``42 s``, ``3:05`` (minutes), ``1:02:07`` (hours); ``?`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Progress of one loop over ``groups`` (name -> number of items; an int: one unnamed group).

    ``done`` counts items already finished before the loop (same shape as ``groups``); ``unit``
    names the items. ``update(group)`` marks one item of ``group`` finished.
    """

    def __init__(self, label: str, groups: Mapping[str, int] | int, unit: str = "items",
                 done: Mapping[str, int] | int = 0, show: bool = True):
        self.label, self.unit = label, unit
        self.totals = {"": int(groups)} if isinstance(groups, int) else {str(k): int(v) for k, v in groups.items()}
        initial = {"": int(done)} if isinstance(done, int) else {str(k): int(v) for k, v in done.items()}
        self.done = {g: min(initial.get(g, 0), n) for g, n in self.totals.items()}
        self.initial = dict(self.done)
        self.t0 = self._last = time.perf_counter()
        self._start: dict[str, float] = {}
        self._first: float | None = None
        self._written = -1e18
        self.closed = False
        self.path = os.environ.get(ENV) or None
        self.bar = None
        if self.path is None and show and not quiet():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, initial=sum(self.done.values()), desc=label, unit=unit.rstrip("s"))
        self._id = f"{os.getpid()}-{id(self)}-{self.t0}"
        self._emit(None, force=True, start=True)

    @property
    def total(self) -> int:
        return sum(self.totals.values())

    def update(self, group: str | None = None, n: int = 1) -> None:
        g = "" if group is None else str(group)
        if g not in self.totals:
            raise KeyError(f"progress {self.label!r}: unknown group {g!r}")
        now = time.perf_counter()
        if self._first is None:
            self._first = self._last = now
        self._start.setdefault(g, self._last)
        self._last = now
        self.done[g] = min(self.done[g] + n, self.totals[g])
        if self.bar is not None:
            self.bar.update(n)
            if len(self.totals) > 1:
                self.bar.set_postfix_str(f"{g} {self.done[g]}/{self.totals[g]}", refresh=False)
        self._emit(g, force=len(self.totals) > 1 and self.done[g] == self.totals[g])

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._emit(None, force=True, final=True)
        if self.bar is not None:
            self.bar.close()
        else:
            print(self.summary(), flush=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def summary(self) -> str:
        """One line: items done (of how many, when not all) and the time, per group."""
        done = sum(self.done.values())
        count = f"{done} {self.unit}" if done == self.total else f"{done}/{self.total} {self.unit}"
        notes = []
        if len(self.totals) > 1:
            notes.append(", ".join(f"{g} {d}" if d == self.totals[g] else f"{g} {d}/{self.totals[g]}"
                                   for g, d in self.done.items()))
        if sum(self.initial.values()):
            notes.append(f"{sum(self.initial.values())} done before")
        line = f"{self.label}: {count} in {clock(time.perf_counter() - self.t0)}"
        return line + (f" ({'; '.join(notes)})" if notes else "")

    def _eta(self, now: float, g: str | None) -> tuple[float | None, float]:
        """(seconds left, seconds elapsed) of the loop or of group ``g``.

        The rate is counted from the loop's first finished item on (that item, which carries the
        start-up of workers and data, is not counted), or for a later group from the last item
        finished before it."""
        if g is None:
            new = sum(self.done.values()) - sum(self.initial.values())
            left, elapsed = self.total - sum(self.done.values()), now - self.t0
            since = self._first
        else:
            new, left = self.done[g] - self.initial[g], self.totals[g] - self.done[g]
            since = self._start.get(g, now)
            elapsed = now - (self.t0 if since == self._first else since)
        if left == 0:
            return 0.0, elapsed
        if since is None:
            return None, elapsed
        if since == self._first:  # the rate's clock starts at the first item: count the items after it
            new -= 1
        span = now - since
        return (span / new * left if new > 0 and span > 0 else None), elapsed

    def _emit(self, g: str | None, force: bool = False, final: bool = False, start: bool = False) -> None:
        if self.path is None:
            return
        now = time.perf_counter()
        if not force and now - self._written < WRITE_EVERY:
            return
        self._written = now
        eta, elapsed = self._eta(now, None)
        ev: dict[str, Any] = {"id": self._id, "label": self.label, "unit": self.unit, "done": sum(self.done.values()),
                              "total": self.total, "elapsed": elapsed, "eta": eta, "start": start, "final": final,
                              "groups": self.totals if len(self.totals) > 1 else None}
        if g and len(self.totals) > 1:
            g_eta, g_elapsed = self._eta(now, g)
            ev.update(group=g, group_done=self.done[g], group_total=self.totals[g], group_eta=g_eta,
                      group_elapsed=g_elapsed)
        try:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(ev) + "\n")  # one short append per event
        except OSError:  # the runner went away: progress is never worth failing a loop
            self.path = None


def format_event(ev: Mapping[str, Any]) -> str:
    """The runner's line for one event, e.g.
    ``networks VGG: 12/64 runs, ~3:10 left (all: 140/384 runs, 6:02 elapsed, ~11:40 left)``."""
    unit, label = ev.get("unit", ""), ev.get("label", "")
    done, total = ev.get("done", 0), ev.get("total", 0)
    if ev.get("final"):
        return f"{label}: {done}/{total} {unit} in {clock(ev.get('elapsed'))}"
    overall = f"{done}/{total} {unit}, {clock(ev.get('elapsed'))} elapsed"
    if done < total and ev.get("eta") is not None:
        overall += f", ~{clock(ev.get('eta'))} left"
    if ev.get("start"):
        groups = ev.get("groups") or {}
        return f"{label}: {done}/{total} {unit}" + (" (" + ", ".join(f"{g} {n}" for g, n in groups.items()) + ")"
                                                     if groups else "")
    group = ev.get("group")
    if not group:
        return f"{label}: {overall}"
    gd, gt = ev.get("group_done", 0), ev.get("group_total", 0)
    mine = f"{gd}/{gt} {unit}"
    if gd >= gt:
        mine += f" in {clock(ev.get('group_elapsed'))}"
    elif ev.get("group_eta") is not None:
        mine += f", ~{clock(ev.get('group_eta'))} left"
    return f"{label} {group}: {mine} (all: {overall})"


class Follower:
    """Follow a progress file in a thread and print its events as lines on ``stream``.

    A loop's events are printed at most every :data:`PRINT_EVERY` seconds (the latest one), except
    its first event, the end of each group and its last event, which are always printed.
    :meth:`flush` reads and prints what is left (the runner calls it after each step).
    """

    def __init__(self, path: Path | str, stream: TextIO | None = None, prefix: str = "",
                 every: float = PRINT_EVERY, poll: float = 0.25):
        self.path, self.stream, self.prefix = Path(path), stream, prefix
        self.every, self.poll = every, poll
        self._offset, self._partial = 0, ""
        self._printed: dict[str, float] = {}
        self._pending: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Follower":
        self._thread = threading.Thread(target=self._run, name="paperlib-progress", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()

    def __enter__(self) -> "Follower":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            self._read(force=False)

    def flush(self) -> None:
        """Read everything written so far and print every event still pending."""
        self._read(force=True)

    def _read(self, force: bool) -> None:
        with self._lock:
            try:
                with open(self.path, encoding="utf-8") as fh:
                    fh.seek(self._offset)
                    chunk = fh.read()
                    self._offset = fh.tell()
            except OSError:
                chunk = ""
            lines = (self._partial + chunk).split("\n")
            self._partial = lines.pop()
            now = time.monotonic()
            for line in lines:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                key = str(ev.get("id"))
                always = (key not in self._printed or ev.get("final")
                          or (ev.get("group") and ev.get("group_done") == ev.get("group_total")))
                if always or now - self._printed[key] >= self.every:
                    self._pending.pop(key, None)
                    self._print(key, ev, now)
                else:
                    self._pending[key] = ev
            for key, ev in list(self._pending.items()):
                if force or now - self._printed.get(key, 0.0) >= self.every:
                    del self._pending[key]
                    self._print(key, ev, now)

    def _print(self, key: str, ev: Mapping[str, Any], now: float) -> None:
        self._printed[key] = now
        stream = self.stream or sys.stderr
        try:
            stream.write(self.prefix + format_event(ev) + "\n")
            stream.flush()
        except (OSError, ValueError):  # a closed terminal must not stop the runner
            pass
