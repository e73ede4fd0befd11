"""One benchmark run, recorded once: shared by the benchmark scripts.

A run whose key is already in results.json is skipped; otherwise the run folder follows
`semisup.sweep.train_point`: a finished one is kept, an interrupted one resumed from its last
checkpoint, one another process is writing left to it. Several queues can
therefore work through the same list side by side (one core each) and a stopped queue loses at
most the steps since its last checkpoint.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from semisup.engine.runfolder import atomic_write
from semisup.sweep import train_point


ROOT = Path(__file__).resolve().parents[1]


def bench_args(ap: argparse.ArgumentParser, data: str, out: str) -> argparse.Namespace:
    """The options every benchmark script shares (data under ../shared/data, results under
    bench/out), parsed."""
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / data))
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / out))
    ap.add_argument("--table", action="store_true", help="print the table of the saved runs; run nothing")
    ap.add_argument("--rerun", action="store_true", help="run again what results.json already holds")
    ap.add_argument("extra", nargs="*", help="more `semisup train` options, after --")
    return ap.parse_args()


def print_machine(extra: str = "") -> None:
    """The line under every benchmark table: CPU, cores, torch version."""
    import torch

    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}{extra}\n")


@contextmanager
def _locked(res_file: Path):
    res_file.parent.mkdir(parents=True, exist_ok=True)
    with open(res_file.with_suffix(".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield json.loads(res_file.read_text()) if res_file.exists() else {}
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def saved(res_file: Path) -> dict:
    with _locked(res_file) as results:
        return results


def run_once(key: str, train_args: list[str], out: Path, res_file: Path, rerun: bool = False,
             **fields) -> dict | None:
    """`semisup train TRAIN_ARGS --out OUT` unless done; its summary (plus FIELDS) saved under KEY.

    Returns None when another process is running it now."""
    if key in saved(res_file) and not rerun:
        print(f"{key}: saved already (pass --rerun to run it again)", flush=True)
        return saved(res_file)[key]

    def launch(resume: bool) -> None:
        cmd = [sys.executable, "-m", "semisup", "train", *train_args, "--out", str(out),
               "--resume" if resume else "--overwrite"]
        print(" ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, check=True)
    if train_point(out, launch, rerun) == "running":
        print(f"{key}: another process is running it, skipped", flush=True)
        return None
    summary = {**fields, **json.loads((out / "summary.json").read_text())}
    with _locked(res_file) as results:
        results[key] = summary
        atomic_write(res_file, lambda p: p.write_text(json.dumps(results, indent=1)))
    return summary
