"""The parent side of the GPU check: one process per part (:func:`run_part`, stopped at the end of
the budget) and the reports, ``gpu_check.json`` and ``gpu_check.md`` (:func:`render_markdown`)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .common import (
    CODE,
    PARTS,
    SCRIPT,
    TITLES,
    _jsonable,
    _tail,
    _write_json,
    check,
    environment,
    nvidia_smi,
    PartRecord,
)


from .on_device import part_determinism, part_paper_end_to_end
from .training import part_cuda_tests, part_train_benchmark


# =========================================================================== the parent
PART_FUNCS = {"cuda_tests": part_cuda_tests, "train_benchmark": part_train_benchmark,
              "determinism": part_determinism, "paper_end_to_end": part_paper_end_to_end}


def _child(args: argparse.Namespace) -> int:
    os.environ.setdefault("PAPERLIB_QUIET", "1")
    rec = PartRecord(Path(args.part_json), args.part)
    try:
        PART_FUNCS[args.part](args, rec)
    except BaseException as exc:  # noqa: BLE001 - recorded
        rec.finish(exc)
        return 1
    rec.finish()
    return 0


def _part_env(name: str, work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PAPERLIB_STORE", "PAPERLIB_ROOT"}}
    env["PYTHONPATH"] = os.pathsep.join([str(CODE), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    env["PAPERLIB_QUIET"] = "1"
    env["TQDM_DISABLE"] = "1"
    env.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if name == "paper_end_to_end":
        env["PAPERLIB_ROOT"] = str(work / "root")
        env["PAPERLIB_DATA"] = str(work / "data")
        env["PAPERLIB_VERIFY_DATA"] = "0"
    return env


def _kill(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(10)
            return
        except subprocess.TimeoutExpired:
            continue


def run_part(name: str, argv: list[str], work: Path, timeout: float, soft_deadline: float) -> dict[str, Any]:
    part_work = work / name
    part_work.mkdir(parents=True, exist_ok=True)
    part_json = work / "parts" / f"{name}.json"
    part_json.unlink(missing_ok=True)
    log = work / "parts" / f"{name}.log"
    cmd = [sys.executable, str(SCRIPT), *argv, "--part", name, "--part-json", str(part_json),
           "--work", str(part_work), "--deadline", f"{soft_deadline:.1f}"]
    t0 = time.perf_counter()
    timed_out = False
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=CODE, env=_part_env(name, part_work), stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill(proc)
            rc = proc.returncode
    seconds = time.perf_counter() - t0
    try:
        rec = json.loads(part_json.read_text())
    except (OSError, ValueError):
        rec = {"part": name, "status": "failed", "error": None, "notes": [], "steps": [], "details": {}}
    output = log.read_bytes().decode(errors="replace")
    if timed_out:
        rec["status"] = "failed"
        rec["error"] = f"stopped at the end of the budget after {seconds:.0f} s (--budget-s)" + (
            f"; it was in step {rec['steps'][-1]['name']!r}" if rec.get("steps") else "")
        for s in rec.get("steps", []):
            if s.get("status") == "running":
                s["status"] = "failed"
                s["error"] = "stopped (budget)"
    elif rec.get("status") not in ("passed", "failed"):
        rec["status"] = "failed"
        rec["error"] = f"the part's process ended with status {rc} before finishing"
    if rec["status"] != "passed":
        rec["output_tail"] = _tail(output, 4000)
    rec["seconds"] = round(seconds, 1)
    rec["returncode"] = rc
    return rec


def _summary_line(name: str, rec: dict[str, Any]) -> str:
    d = rec.get("details", {})
    if rec.get("status") == "skipped":
        return rec.get("error") or ""
    if name == "cuda_tests":
        return d.get("summary") or ""
    if name == "train_benchmark":
        proj = d.get("projection", {}).get("profile", {})
        p1, best = proj.get("runs_per_device_1"), proj.get("best")
        if p1 and best:
            return (f"paper profile projected {p1['hours']:.1f} h at runs_per_device 1, {best['hours']:.1f} h at "
                    f"{best['runs_per_device']}" + ("" if p1["complete"] and d.get("all_paper_archs") else
                                                     " (measured populations only)"))
        return ""
    if name == "determinism":
        if "identical_all" in d:
            return (f"{d.get('n_snapshots', 0)} snapshots x 3 trainings: "
                    + ("bit-identical" if d["identical_all"] else "DIFFER"))
        return ""
    if name == "paper_end_to_end":
        steps = rec.get("steps", [])
        ok = sum(s["status"] == "passed" for s in steps)
        skipped = [c["call"] for s in steps for c in s.get("calls", []) if c["status"] == "skipped"]
        return f"{ok}/{len(steps)} steps passed" + (
            f"; skipped (module not installed): {', '.join(skipped)}" if skipped else "")
    return ""


def _fmt(v: Any, spec: str = ".3f") -> str:
    if v is None:
        return "–"
    try:
        return format(float(v), spec)
    except (TypeError, ValueError):
        return str(v)


def render_markdown(report: dict[str, Any]) -> str:
    env = report.get("environment", {})
    lines = [f"# GPU check: {report['status'].upper()}", "",
             f"`{report['command']}`; started {report['started']}, {report['total_seconds']:.0f} s in all "
             f"(budget {report['budget_s']:.0f} s); device `{report['device']}`"
             + (" (tiny dry run)" if report["tiny"] else "") + f"; commit `{env.get('git_commit') or 'unknown'}`.",
             "", "| part | status | seconds | summary |", "|---|---|---|---|"]
    for name in PARTS:
        rec = report["parts"].get(name, {})
        lines.append(f"| {TITLES[name]} | **{rec.get('status', '?')}** | {_fmt(rec.get('seconds'), '.0f')} | "
                     f"{_summary_line(name, rec)} |")
    smi = env.get("nvidia_smi", {})
    mods = env.get("modules", {})
    lines += ["", "## Environment", "",
              f"- card: {env.get('device_name', 'none')} ({env.get('gpu_count', 0)} GPU(s), capability "
              f"{env.get('capability', '–')}, {env.get('memory_gib', '–')} GiB)",
              f"- driver: {env.get('driver') or '–'}; CUDA (torch.version.cuda): {env.get('torch_cuda') or '–'}; "
              f"cuDNN: {env.get('cudnn') or '–'}",
              f"- torch {env.get('torch')}, Python {env.get('python')}, {env.get('cpu_count')} CPU cores, "
              f"{env.get('platform')}",
              f"- modules not installed: {', '.join(m for m, ok in mods.items() if not ok) or 'none'} "
              f"(checked: {', '.join(mods)})"]
    for name in PARTS:
        rec = report["parts"].get(name)
        if rec is None:
            continue
        d = rec.get("details", {})
        lines += ["", f"## {TITLES[name]}", "", f"Status: **{rec['status']}**, {_fmt(rec.get('seconds'), '.1f')} s."]
        if rec.get("error"):
            lines += ["", f"Error: `{rec['error']}`"]
        for note in rec.get("notes", []):
            lines.append(f"- {note}")
        if name == "cuda_tests" and d:
            lines += ["", f"`{d.get('command', '')}`", "", f"Summary: `{d.get('summary')}`", ""]
            for t in d.get("tests", []):
                lines.append(f"- {t['outcome']}: `{t['test']}`" + (f" ({t['message']})" if t.get("message") else ""))
        if name == "train_benchmark" and d.get("rows"):
            ks = d.get("runs_per_device_tried", [1])
            lines += ["", f"{d.get('device')}; batch {d.get('batch_size')}, {d.get('timed_batches')} timed batches, "
                      f"reference loader workers {d.get('ref_workers')}. Seconds per epoch projected to the full "
                      "training and test sets (50,000 / 10,000 CIFAR-10, 50,000 / 5,000 Tiny-ImageNet); "
                      "ratio: the reference's seconds per epoch over ours; speedup: aggregate training "
                      "images/s of k runs side by side on the device over one run's.", "",
                      "| population | nets | epochs | s/epoch | epochs/s | ref s/epoch | ref epochs/s | ratio | "
                      + " | ".join(f"speedup k={k}" for k in ks) + " | best k |",
                      "|---|---|---|---|---|---|---|---|" + "---|" * len(ks) + "---|"]
            for arch, row in d["rows"].items():
                sp = row.get("speedup", {})
                lines.append(f"| {row['population']} | {row['networks']} | {row['epochs']} | "
                             f"{_fmt(row.get('ours_s_per_epoch'))} | {_fmt(row.get('ours_epochs_per_s'))} | "
                             f"{_fmt(row.get('ref_s_per_epoch'))} | {_fmt(row.get('ref_epochs_per_s'))} | "
                             f"{_fmt(row.get('ratio'), '.2f')} | "
                             + " | ".join(_fmt(sp.get(str(k)), ".2f") for k in ks)
                             + f" | {row.get('best_runs_per_device', '–')} |"
                             + (f" {row['error']}" if row.get("error") else ""))
            lines.append("")
            for label, title in (("cifar10", "CIFAR-10 part"), ("profile", "whole paper profile")):
                p = d.get("projection", {}).get(label)
                if not p:
                    continue
                p1, best = p["runs_per_device_1"], p["best"]
                partial = "" if p1["complete"] and p.get("covers_whole_part") else \
                    f" (measured populations only: {', '.join(a for a in p['populations'] if a not in p1['missing'])})"
                line = f"- projected wall time of the {title}{partial}: {p1['hours']:.2f} h at runs_per_device 1"
                if best:
                    line += f", {best['hours']:.2f} h at the best measured runs_per_device {best['runs_per_device']}"
                lines.append(line + " (upper bound: no early stopping, one device)")
        if name == "determinism" and d.get("sha256"):
            e = d.get("environment", {})
            lines += ["", f"Spec: {d['spec'].get('model')} {d['spec'].get('model_kwargs')} on "
                      f"{d['spec'].get('dataset')}, {d['spec'].get('train_limit')} images, batch "
                      f"{d['spec'].get('batch_size')}, {d['spec'].get('epochs')} epoch(s), device "
                      f"{d['spec'].get('device')} ({e.get('device_name', 'cpu')}; driver {e.get('driver') or '–'}, "
                      f"CUDA {e.get('torch_cuda') or '–'}, cuDNN {e.get('cudnn') or '–'}).", "",
                      "| epoch | " + " | ".join(d["sha256"]) + " |", "|---|" + "---|" * len(d["sha256"])]
            n = max(len(v) for v in d["sha256"].values())
            for i in range(n):
                lines.append(f"| {i} | " + " | ".join(f"`{v[i][:16]}`" if i < len(v) else "–"
                                                       for v in d["sha256"].values()) + " |")
            lines.append("")
            lines.append("Identical (A = B = pool): " + ("yes" if d.get("identical_all") else "NO"))
        if rec.get("steps"):
            lines += ["", "| step | status | seconds | notes |", "|---|---|---|---|"]
            for s in rec["steps"]:
                bits = [f"{c['call']}: {c['status']}" for c in s.get("calls", []) if c["status"] != "passed"]
                bits += [f"FAILED: {c['check']}" if c.get("required", True) else
                         f"not met (not required in a dry run): {c['check']}"
                         for c in s.get("checks", []) if not c["ok"]]
                if s.get("error"):
                    bits.append(s["error"])
                cell = " ".join("; ".join(bits).replace("|", "/").split())
                lines.append(f"| {s['name']} | {s['status']} | {_fmt(s.get('seconds'), '.1f')} | {_tail(cell, 600)} |")
        if rec.get("output_tail") and rec["status"] != "passed":
            lines += ["", "<details><summary>output (tail)</summary>", "", "```", rec["output_tail"], "```",
                      "", "</details>"]
    if smi.get("text"):
        lines += ["", "## nvidia-smi", "", "```", smi["text"], "```"]
    return "\n".join(lines) + "\n"


def write_reports(out: Path, report: dict[str, Any]) -> None:
    _write_json(out / "gpu_check.json", report)
    tmp = out / "gpu_check.md.tmp"
    tmp.write_text(render_markdown(_jsonable(report)))
    os.replace(tmp, out / "gpu_check.md")

