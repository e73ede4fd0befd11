"""The run folder: config.yaml, metrics.jsonl, summary.json, checkpoints/, curves.png.

A run writes its marker (.semisup-run) first; only a folder holding it (or a run folder from before
the marker: config.yaml and checkpoints or summary.json, and nothing else) is a run. A folder holding
a run is never overwritten without --overwrite, and then only the files a run writes go; a folder
that is not a run is never written into. Checkpoints and summaries are written to a temporary file
and renamed, so a killed run leaves the last complete one behind."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from pathlib import Path

import torch
import yaml

from ..errors import UserError, disk_error, first_line, out_of_memory

MARKER = ".semisup-run"
# what a run (and eval, predict, sample with their default outputs) writes in its folder
RUN_FILES = {MARKER, "run.lock", "config.yaml", "metrics.jsonl", "summary.json", "checkpoints", "curves.png",
             "labels.csv", "samples", "samples.png", "examples.png", "predictions", "sample_grid.png", "cache", "report"}


def _run_file(name: str) -> bool:
    return name in RUN_FILES or name.endswith(".tmp")


def atomic_write(path: Path, write) -> None:
    """write(PATH.tmp), then rename it to PATH: a reader or a killed process never sees half a file. On
    any failure the .tmp goes; a full or read-only disk is a UserError naming PATH."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and (err := disk_error(e, path)) is not None:
            raise err from None
        raise


def _torch_save(obj, path: Path) -> None:
    with open(path, "wb") as f:  # through a Python file, a full disk is an OSError (ENOSPC), not "unexpected pos"
        torch.save(obj, f)


# ---------------------------------------------------------------------------- the lock
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _started(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), which tells a reused id apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def lock_holder(path: Path) -> str | None:
    """Which live process holds PATH/run.lock ('process PID'), or None: no lock, or one left by a process
    that is gone. A lock written on another host is taken as gone: it cannot be checked from here, and a
    run resumed after a preemption lands on another host."""
    try:
        pid, host, started = (path.joinpath("run.lock").read_text().split() + ["", ""])[:3]
        pid = int(pid)
    except (OSError, ValueError):
        return None
    if (host and host != socket.gethostname()) or pid == os.getpid() or not _alive(pid):
        return None  # os.getpid(): a restarted container hands out the same ids
    if started and _started(pid) not in (None, started):
        return None  # the id now belongs to another process
    return f"process {pid}"


# ---------------------------------------------------------------------------- what the folder holds
def _legacy_run(path: Path, names: list[str]) -> bool:
    """A run folder written before the marker: only a run's files, a checkpoint or a summary, and a
    config.yaml with semisup's own options (another tool's config.yaml + checkpoints/last.pt is not one)."""
    if not ("config.yaml" in names and ((path / "checkpoints" / "last.pt").exists() or "summary.json" in names)
            and all(_run_file(n) for n in names)):
        return False
    try:
        cfg = yaml.safe_load((path / "config.yaml").read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return False
    return isinstance(cfg, dict) and {"method", "unlabeled_ratio", "save_every"} <= set(cfg)


def run_state(path: Path) -> str:
    """'new' (absent, empty, or a run killed before it saved anything), 'running', 'finished',
    'interrupted', or 'foreign': not a run folder, never written into."""
    if not path.exists():
        return "new"
    if not path.is_dir():
        return "foreign"
    names = [p.name for p in path.iterdir()]
    if not names:
        return "new"
    if MARKER not in names and not _legacy_run(path, names):
        return "foreign"
    if lock_holder(path):
        return "running"
    if "summary.json" in names:
        return "finished"
    if not any((path / "checkpoints").glob("*.pt")):
        return "new"  # nothing worth keeping: it starts afresh in the same folder
    return "interrupted"


def check_writable(path: Path, what: str) -> None:
    """Refuse, before any work, a folder `path` that cannot be made or written: under a file, on a
    read-only disk, or without permission. `what` starts the message (the option, e.g. "--out X")."""
    up = Path(path)
    while not up.exists() and up != up.parent:
        up = up.parent
    if not up.is_dir():
        raise UserError(f"{what}: {up} is a file, not a folder; choose another {what.split()[0]}")
    if not os.access(up, os.W_OK | os.X_OK):
        ro = hasattr(os, "statvfs") and os.statvfs(up).f_flag & os.ST_RDONLY
        raise UserError(f"{what}: {up} is {'on a read-only file system' if ro else 'not writable'}; "
                        f"choose another {what.split()[0]}")


def check_out(path: Path, resume: bool, overwrite: bool) -> str:
    """Decide, before anything is written, whether this run may use `path`."""
    path = Path(path)
    state = run_state(path)
    if state == "foreign":
        if not path.is_dir():
            raise UserError(f"--out {path}: is a file, not a folder; choose another --out")
        names = sorted(p.name for p in path.iterdir())
        example = next((n for n in names if not _run_file(n)), names[0])
        raise UserError(f"--out {path}: not a semisup run folder (it holds {example}); choose a new or empty "
                        "folder for --out")
    check_writable(path, f"--out {path}")
    if state == "running":
        raise UserError(f"--out {path}: a run is being written there now ({lock_holder(path)}, see "
                        f"{path / 'run.lock'}); wait for it or choose another --out")
    if resume:
        if state == "new":
            raise UserError(f"--resume: {path} holds no run to resume (no checkpoint was saved); drop --resume "
                            "to start one")
        if state == "finished":
            raise UserError(f"--resume: the run in {path} already finished; use --overwrite to run it again")
        if not (path / "checkpoints" / "last.pt").exists():
            raise UserError(f"--resume: {path} has no checkpoints/last.pt (it stopped before its first "
                            "checkpoint); start again with --overwrite")
        if not (path / "config.yaml").exists():
            raise UserError(f"--resume: {path} has no config.yaml, so its options are unknown; start again "
                            "with --overwrite")
        return state
    if state == "finished" and not overwrite:
        raise UserError(f"--out {path}: already holds a finished run; pass --overwrite to replace it, "
                        "or choose another --out")
    if state == "interrupted" and not overwrite:
        raise UserError(f"--out {path}: already holds an interrupted run; pass --resume to continue it, "
                        "--overwrite to replace it, or choose another --out")
    return state


def code_version() -> dict:
    """The code a run was trained with, recorded in its config.yaml under `code`: the package
    version and the git commit of the package's source tree ("+dirty" when that tree has changes
    not committed), or commit None when the package is not a tracked part of a git checkout (an
    installed wheel, no git binary). Never raises: provenance must not fail a run."""
    import subprocess

    from .. import __version__

    here = Path(__file__).resolve().parents[1]  # the package folder, src/semisup in a checkout

    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=10,
                               stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    commit = None
    if git("ls-files", "--", "__init__.py"):  # tracked here, not a package inside someone else's repo
        commit = git("rev-parse", "HEAD")
        if commit and git("status", "--porcelain", "--", ".") != "":
            commit += "+dirty"  # changes, or a failed status: not the commit's code for certain
    return {"semisup": __version__, "commit": commit}


class RunFolder:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.ckpt_dir = self.path / "checkpoints"
        self.made: Path | None = None  # the topmost folder this run created
        self.locked = False

    def start(self, config: dict, fresh: bool) -> None:
        """Take the folder: the marker first, then the lock; a fresh start then removes a previous run's
        files (only those) and writes config.yaml: the options and the code (`code_version`)."""
        try:
            missing = [p for p in [self.path, *self.path.parents] if not p.exists()]
            self.path.mkdir(parents=True, exist_ok=True)
            self.made = missing[-1] if missing else None
            marker = self.path / MARKER
            if fresh or not marker.exists():
                from .. import __version__

                atomic_write(marker, lambda p: p.write_text(json.dumps(
                    {"semisup": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}) + "\n"))
            self._lock()
            if fresh:
                self.clear(keep={MARKER, "run.lock"})
            self.ckpt_dir.mkdir(exist_ok=True)
            if fresh:  # the options, then the code that ran them (`code_version`)
                saved = {**config, "code": code_version()}
                atomic_write(self.path / "config.yaml",
                             lambda p: p.write_text(yaml.safe_dump(saved, sort_keys=False)))
        except OSError as e:
            raise UserError(f"--out {self.path}: cannot write the run folder there ({e.strerror}); "
                            "choose another --out") from None

    def _lock(self) -> None:
        lock = self.path / "run.lock"
        if lock_holder(self.path) is None:
            lock.unlink(missing_ok=True)  # a stale one
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            raise UserError(f"--out {self.path}: a run is being written there now (see {lock}); wait for it or "
                            "choose another --out") from None
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()} {socket.gethostname()} {_started(os.getpid()) or ''}\n")
        self.locked = True

    def clear(self, keep=()) -> None:
        """Remove what a run writes here, and nothing else."""
        for p in self.path.iterdir():
            if _run_file(p.name) and p.name not in keep:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()

    def close(self, keep: bool = True) -> None:
        """Release the lock. keep=False (a run that failed before its first checkpoint): also remove its
        files and the folders it made, so the same --out works again without --overwrite."""
        if not self.locked:
            return
        self.locked = False
        if not keep:
            with contextlib.suppress(OSError):
                self.clear()
            with contextlib.suppress(OSError):
                p = self.path
                while self.made is not None and p != self.made.parent:
                    p.rmdir()  # stops at the first folder that is not empty
                    p = p.parent
        with contextlib.suppress(OSError):
            (self.path / "run.lock").unlink(missing_ok=True)

    # metrics.jsonl: one line per evaluation
    def metrics(self) -> list[dict]:
        """The evaluations so far; a line torn by a kill in mid-write is skipped."""
        f = self.path / "metrics.jsonl"
        if not f.exists():
            return []
        rows = []
        for line in f.read_text(errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), int):
                rows.append(row)
        return rows

    def log(self, row: dict) -> None:
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    def truncate_metrics(self, step: int) -> None:
        """On resume, drop evaluations written after the checkpoint being resumed (and a torn line)."""
        rows = [r for r in self.metrics() if r["step"] <= step]
        atomic_write(self.path / "metrics.jsonl",
                     lambda p: p.write_text("".join(json.dumps(r) + "\n" for r in rows)))

    def write_summary(self, summary: dict) -> None:
        atomic_write(self.path / "summary.json", lambda p: p.write_text(json.dumps(summary, indent=2) + "\n"))

    def save_checkpoint(self, state: dict, name: str) -> None:
        atomic_write(self.ckpt_dir / name, lambda p: _torch_save(state, p))


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """A checkpoint; a torn, corrupt or foreign file is a UserError naming it, and so is one from
    before the networks normalised their own input (its method state holds `pixel_mean`)."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except FileNotFoundError:
        raise UserError(f"{path}: no such checkpoint") from None
    except Exception as e:  # torn zip (RuntimeError), garbage (UnpicklingError), truncated pickle (EOFError), ...
        if out_of_memory(e):
            raise
        raise UserError(f"{path}: cannot read the checkpoint ({first_line(e)}); the file is torn or not a semisup "
                        "checkpoint") from None
    if isinstance(ckpt, dict) and "pixel_mean" in ckpt.get("method", {}):
        raise UserError(f"{path}: written by an older semisup, whose networks took normalised images; this "
                        "version's networks normalise their own input, so retrain the run (or use the semisup "
                        "that wrote it)")
    return ckpt


def load_config(path: Path) -> dict:
    try:
        cfg = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"--config {path}: cannot read it ({str(e).splitlines()[0]})")
    if not isinstance(cfg, dict):
        raise UserError(f"--config {path}: expected a YAML mapping of option: value")
    return cfg
