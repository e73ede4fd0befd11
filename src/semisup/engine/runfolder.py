"""The run folder: config.yaml, metrics.jsonl, summary.json, checkpoints/, curves.png.

A folder holding a finished or running run is never overwritten without --overwrite, and a
folder that is not a run folder is never deleted. Checkpoints and summaries are written to a
temporary file and renamed, so a killed run leaves the last complete one behind."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
import yaml

from ..errors import UserError


def atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_state(path: Path) -> str:
    """'new', 'finished', 'running', 'interrupted' or 'foreign' (not a run folder)."""
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return "new"
    if not path.is_dir() or not (path / "config.yaml").exists():
        return "foreign"
    lock = path / "run.lock"
    if lock.exists():
        try:
            if _alive(int(lock.read_text().split()[0])):
                return "running"
        except (ValueError, IndexError, OSError):
            pass
    if (path / "summary.json").exists():
        return "finished"
    return "interrupted"


def check_out(path: Path, resume: bool, overwrite: bool) -> str:
    """Decide, before anything is written, whether this run may use `path`."""
    state = run_state(path)
    if state == "foreign":
        raise UserError(f"--out {path}: exists and is not a semisup run folder; choose another --out")
    if state == "running":
        raise UserError(f"--out {path}: a run is being written there now (see {path / 'run.lock'}); "
                        "wait for it or choose another --out")
    if resume:
        if state == "new":
            raise UserError(f"--resume: {path} holds no run to resume; drop --resume to start one")
        if state == "finished":
            raise UserError(f"--resume: the run in {path} already finished; use --overwrite to run it again")
        if not (path / "checkpoints" / "last.pt").exists():
            raise UserError(f"--resume: {path} has no checkpoints/last.pt yet; start again with --overwrite")
        return state
    if state != "new" and not overwrite:
        raise UserError(f"--out {path}: already holds a{'' if state == 'interrupted' else ' finished'} "
                        f"{'interrupted ' if state == 'interrupted' else ''}run; pass --resume to continue it, "
                        "--overwrite to replace it, or choose another --out")
    return state


class RunFolder:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.ckpt_dir = self.path / "checkpoints"

    def start(self, config: dict, fresh: bool) -> None:
        if fresh and self.path.exists():
            shutil.rmtree(self.path)
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        (self.path / "run.lock").write_text(f"{os.getpid()}\n")
        if fresh:
            atomic_write(self.path / "config.yaml",
                         lambda p: p.write_text(yaml.safe_dump(config, sort_keys=False)))

    def finish(self) -> None:
        (self.path / "run.lock").unlink(missing_ok=True)

    # metrics.jsonl: one line per evaluation
    def metrics(self) -> list[dict]:
        f = self.path / "metrics.jsonl"
        if not f.exists():
            return []
        return [json.loads(line) for line in f.read_text().splitlines() if line.strip()]

    def log(self, row: dict) -> None:
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    def truncate_metrics(self, step: int) -> None:
        """On resume, drop evaluations written after the checkpoint being resumed."""
        rows = [r for r in self.metrics() if r["step"] <= step]
        atomic_write(self.path / "metrics.jsonl",
                     lambda p: p.write_text("".join(json.dumps(r) + "\n" for r in rows)))

    def write_summary(self, summary: dict) -> None:
        atomic_write(self.path / "summary.json", lambda p: p.write_text(json.dumps(summary, indent=2) + "\n"))

    def save_checkpoint(self, state: dict, name: str) -> None:
        atomic_write(self.ckpt_dir / name, lambda p: torch.save(state, p))


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except (OSError, RuntimeError, EOFError) as e:
        raise UserError(f"{path}: cannot read the checkpoint ({e})")


def load_config(path: Path) -> dict:
    try:
        cfg = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"--config {path}: cannot read it ({str(e).splitlines()[0]})")
    if not isinstance(cfg, dict):
        raise UserError(f"--config {path}: expected a YAML mapping of option: value")
    return cfg
