"""Score finished generation runs again with this code's evaluator: conditional accuracy and local
FID of the generator in each run's last checkpoint, on the run's own data and draw. For
before/after tables whose "before" ran on older code: its own evaluator was another network, so
its FID is in another feature space; this puts both in the same one. Only the parts of the
checkpoint whose layout this code shares are loaded (an older classifier may differ); the
scores need only the generator, and the line names what was left out.

    python bench/rescore_generate.py RUN_DIR [RUN_DIR ...]
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from semisup.engine.runfolder import load_config
from semisup.evaluator import GenEvaluator
from semisup.config import TASK_DEFAULTS, defaults, method_options, resolve
from semisup.run import prepare


def rescore(run_dir: Path) -> dict:
    saved = load_config(run_dir / "config.yaml")
    known = set(defaults()) | set(method_options()) | {k for d in TASK_DEFAULTS.values() for k in d}
    cfg = resolve({}, {k: v for k, v in saved.items() if k in known})  # an older run's options this code knows
    data, _, method = prepare(cfg)
    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    mine = method.state_dict()
    # an older run's classifier or discriminator may be laid out otherwise; its generator scores alone
    parts = {k.split(".")[0] for k in mine}
    fits = {p for p in parts if all(k in ckpt["method"] and ckpt["method"][k].shape == v.shape
                                    for k, v in mine.items() if k.split(".")[0] == p)}
    method.load_state_dict({k: v for k, v in ckpt["method"].items() if k.split(".")[0] in fits}, strict=False)
    method.eval()
    return {"step": ckpt["step"], "not_loaded": sorted(parts - fits),
            **GenEvaluator(data, torch.device("cpu"), cfg["seed"])(method)}


if __name__ == "__main__":
    for d in sys.argv[1:]:
        r = rescore(Path(d))
        print(f"{d}: step {r['step']}, conditional accuracy {100 * r['conditional_accuracy']:.1f}%, "
              f"local FID {r['local_fid']:.2f} (floor {r['local_fid_floor']:.2f})"
              + (f"; not loaded (another layout): {', '.join(r['not_loaded'])}" if r["not_loaded"] else ""))
