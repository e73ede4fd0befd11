"""Transfer from a donor network: does a backbone pretrained on other classes help, and do the
unlabeled images help on top of it?

    python bench/transfer.py [--data ../shared/data/cifar10-jpg.tar.gz] [--seeds 0 1 2]
                             [--donor-steps 3000] [--steps 1000] [--table] [-- more train options]

1. The donor: timm `resnet18` at 32 px, trained supervised (every label, SGD defaults) on the
   CIFAR-10 classes airplane..deer, its backbone saved as `donor.safetensors` (timm's names).
2. On the other five classes (dog..truck), 25 labels per class, the rest of their training
   images unlabeled, four runs of the same steps and batches (--batch-size 16 --unlabeled-ratio
   2): FixMatch and supervised, each from the donor (`--pretrained donor.safetensors`, so
   semisup's fine-tuning defaults: AdamW 5e-4, EMA 0, a warm-up; layer decay only for ViTs) and
   from random weights (the classic defaults: SGD 0.03, EMA 0.999).
Prints the table for docs/benchmarks.md: final and best test accuracy on the five classes.
"""
from __future__ import annotations

import argparse
import json
import sys
import tarfile
from pathlib import Path

from runs import bench_args, print_machine, run_once, saved

DONOR = ["airplane", "automobile", "bird", "cat", "deer"]
TARGET = ["dog", "frog", "horse", "ship", "truck"]
BATCH = ["--batch-size", "16", "--unlabeled-ratio", "2"]


def class_folders(archive: Path, out: Path) -> tuple[Path, Path]:
    """The archive's images once under out/cifar, and two folder data sets of links to them."""
    root = out / "cifar"
    if not (root / "test").is_dir():
        with tarfile.open(archive) as t:
            t.extractall(root, filter="data")
    for name, classes in (("donor", DONOR), ("target", TARGET)):
        for split in ("train", "test"):
            (out / name / split).mkdir(parents=True, exist_ok=True)
            for c in classes:
                link = out / name / split / c
                if not link.exists():
                    link.symlink_to(root / split / c, target_is_directory=True)
    return out / "donor", out / "target"


def export_backbone(run: Path, file: Path) -> None:
    """The timm network inside the donor's evaluated weights, under timm's own names."""
    import torch
    from safetensors.torch import save_file

    from semisup.engine.runfolder import load_checkpoint

    state = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    timm_part = {k[len("features.1."):]: v.contiguous() for k, v in state.items() if k.startswith("features.1.")}
    save_file({k: v for k, v in timm_part.items() if torch.is_floating_point(v) or v.ndim}, str(file))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--donor-steps", type=int, default=3000)
    ap.add_argument("--steps", type=int, default=1000)
    a = bench_args(ap, "cifar10-jpg.tar.gz", "transfer")
    out, res = Path(a.out), Path(a.out) / "results.json"
    runs = [(m, init) for m in ("fixmatch", "supervised") for init in ("donor", "random")]
    if not a.table:
        if not Path(a.data).exists():
            sys.exit(f"{a.data}: CIFAR-10 image-folder archive not found")
        donor_data, target = class_folders(Path(a.data), out)
        donor = run_once("donor", ["--data", str(donor_data), "--method", "supervised", "--model", "resnet18",
                                   "--steps", str(a.donor_steps), "--batch-size", "64", "--eval-every",
                                   str(a.donor_steps // 3), "--save-every", str(a.donor_steps // 3), "--quiet"],
                         out / "donor-run", res, a.rerun)
        weights = out / "donor.safetensors"
        if not weights.exists() or a.rerun:
            export_backbone(out / "donor-run", weights)
        print(f"donor: {donor['metrics']['test_accuracy']:.4f} on {', '.join(DONOR)}", flush=True)
        for seed in a.seeds:
            for method, init in runs:
                extra = ["--pretrained", str(weights)] if init == "donor" else []
                run_once(f"{method}-{init}-s{seed}",
                         ["--data", str(target), "--method", method, "--model", "resnet18", "--labels-per-class",
                          "25", "--seed", str(seed), "--steps", str(a.steps), *BATCH, "--eval-every",
                          str(a.steps // 5), "--save-every", str(a.steps // 2), "--quiet", *extra, *a.extra],
                         out / f"{method}-{init}-s{seed}", res, a.rerun, method=method, init=init, seed=seed)
    results = saved(res)
    if "donor" in results:
        print(f"donor (supervised, every label of {', '.join(DONOR)}): test accuracy "
              f"{results['donor']['metrics']['test_accuracy']:.4f}\n")
    print("| method | init | seeds | final test accuracy | mean | best (step) |\n|---|---|---|---|---|---|")
    for method, init in runs:
        done = [results[k] for k in (f"{method}-{init}-s{s}" for s in a.seeds) if k in results]
        if not done:
            continue
        finals = [r["metrics"]["test_accuracy"] for r in done]
        best = ", ".join(f"{r['metrics']['best_test_accuracy']:.4f} ({r['metrics']['best_step']})" for r in done)
        print(f"| {method} | {init} | {', '.join(str(r['seed']) for r in done)} | "
              f"{', '.join(f'{x:.4f}' for x in finals)} | {sum(finals) / len(finals):.4f} | {best} |")
    print(json.dumps({k: v.get("timing", {}).get("wall_seconds") for k, v in results.items()}))
    print_machine()


if __name__ == "__main__":
    main()
