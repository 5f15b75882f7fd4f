"""Progress of long loops: events in the runner's file, lines on its terminal, one summary line in the
notebook, and the estimate of the time left on a hand-computed case."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from paperlib import progress
from paperlib.progress import Follower, Progress, clock, format_event


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    c = FakeClock()
    monkeypatch.setattr(progress.time, "perf_counter", c)
    monkeypatch.setattr(progress, "WRITE_EVERY", 0.0)
    return c


@pytest.fixture
def channel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "progress.jsonl"
    path.write_text("")
    monkeypatch.setenv(progress.ENV, str(path))
    return path


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_clock():
    assert [clock(s) for s in (0, 42.4, 60, 185, 3727, None, float("nan"))] == \
        ["0 s", "42 s", "1:00", "3:05", "1:02:07", "?", "?"]


def test_estimate_of_the_time_left_per_group_and_overall(channel, fake_time, capsys):
    """Two groups of 3 and 2 items, one item of the first done before. The first item finished carries
    the start-up (10 s) and is not counted; then 2 s per item of A, 5 s per item of B."""
    bar = Progress("networks", {"A": 3, "B": 2}, unit="runs", done={"A": 1})
    for dt, g in [(10, "A"), (2, "A"), (5, "B"), (5, "B")]:
        fake_time.now += dt
        bar.update(g)
    bar.close()
    ev = _events(channel)
    assert ev[0]["start"] and ev[0]["done"] == 1 and ev[0]["groups"] == {"A": 3, "B": 2}
    first, a_done, b1, b_done, final = ev[1:]
    assert first["eta"] is None and first["group_eta"] is None  # one item: no rate yet
    assert a_done["group_done"] == 3 and a_done["group_eta"] == 0 and a_done["eta"] == pytest.approx(2 / 1 * 2)
    assert b1["group_eta"] == pytest.approx(5.0)  # B started at A's last item: 5 s for 1 item, 1 left
    assert b1["eta"] == pytest.approx((2 + 5) / 2 * 1)
    assert b_done["group_elapsed"] == pytest.approx(10.0) and final["final"] and final["done"] == 5
    assert format_event(b1) == "networks B: 1/2 runs, ~5 s left (all: 4/5 runs, 17 s elapsed, ~4 s left)"
    assert format_event(b_done) == "networks B: 2/2 runs in 10 s (all: 5/5 runs, 22 s elapsed)"
    assert format_event(ev[0]) == "networks: 1/5 runs (A 3, B 2)"
    assert format_event(final) == "networks: 5/5 runs in 22 s"
    # no bar under the runner: the one line the executed notebook keeps
    assert capsys.readouterr().out == "networks: 5 runs in 22 s (A 3, B 2; 1 done before)\n"


def test_follower_prints_first_group_ends_and_last_and_at_most_one_line_per_interval(channel, fake_time):
    with Progress("Q1 evaluations", 50, unit="tasks") as bar:
        for _ in range(50):
            fake_time.now += 1
            bar.update()
    with Progress("centralities", {"LeNet": 2, "VGG": 2}, unit="runs") as bar:
        for g in ("LeNet", "LeNet", "VGG", "VGG"):
            bar.update(g)
    out = io.StringIO()
    follower = Follower(channel, out, prefix="  ", every=3600)  # everything arrives within one interval
    follower.flush()
    lines = out.getvalue().splitlines()
    assert lines == ["  Q1 evaluations: 0/50 tasks", "  Q1 evaluations: 50/50 tasks in 50 s",
                     "  centralities: 0/4 runs (LeNet 2, VGG 2)",
                     "  centralities LeNet: 2/2 runs in 0 s (all: 2/4 runs, 0 s elapsed)",
                     "  centralities VGG: 2/2 runs in 0 s (all: 4/4 runs, 0 s elapsed)",
                     "  centralities: 4/4 runs in 0 s"]
    out2 = io.StringIO()
    Follower(channel, out2, every=0).flush()  # no interval: every event written is printed
    assert len(out2.getvalue().splitlines()) == len(_events(channel))


def test_follower_thread_reads_partial_lines(tmp_path: Path):
    path = tmp_path / "p.jsonl"
    ev = json.dumps({"id": "x", "label": "networks", "unit": "runs", "done": 0, "total": 3, "start": True})
    path.write_text(ev[:10])
    out = io.StringIO()
    with Follower(path, out, poll=0.01) as follower:
        follower.flush()
        assert out.getvalue() == ""
        with open(path, "a") as fh:
            fh.write(ev[10:] + "\n")
    assert out.getvalue() == "networks: 0/3 runs\n"


def test_quiet_without_the_runner_shows_nothing_but_the_summary(monkeypatch, capsys):
    monkeypatch.delenv(progress.ENV, raising=False)
    monkeypatch.setenv("PAPERLIB_QUIET", "1")
    with Progress("networks", 2, unit="runs") as bar:
        bar.update()
        bar.update()
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.startswith("networks: 2 runs in ")
