"""Segmentation benchmark, CamVid 240x180, U-Net: a fraction of the 367 training images
labeled, the rest unlabeled.

    python bench/segmentation.py [--data ../shared/data/camvid-240x180] [--labels 46 92]
                           [--methods supervised fixmatch unimatch cps ae_pretrain mean_teacher]
                           [--steps 1000] [--seed 0] [-- more semisup train options]
    python bench/segmentation.py --table      # the table of every run saved so far, nothing run
    python bench/segmentation.py --data shapes --out bench/out/shapes --labels 50 --image-size 0 --seeds 0 1 2
    python bench/segmentation.py --data bench/out/cells-data --out bench/out/cells --labels 20 --image-size 0

`--image-size 0` trains on whole images (the built-in shapes, the cells of bench/cells.py);
`--tag=T` adds T to the saved runs' keys, for runs that differ only in the options after --.

Every method gets the same steps, batch (8 labeled, 8 unlabeled), crop and schedule; the
checkpoint is selected on `val` (101 images) and its mean IoU on `test` (233 images, void
ignored) is the reported number. Each run is a plain `semisup train`; results are saved
after every run (bench/out/camvid/results.json) and printed as Markdown; a saved run is
not run again, an interrupted one is resumed (bench/runs.py).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runs import bench_args, print_machine, run_once, saved



def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--labels", nargs="+", type=int, default=[46, 92], help="46 = 1/8, 92 = 1/4 of 367")
    ap.add_argument("--methods", nargs="+", default=["supervised", "fixmatch", "unimatch", "cps", "ae_pretrain", "mean_teacher"])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--image-size", type=int, default=128, help="square training crop (0: the data's default)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--tag", default="", help="a suffix of the saved runs' keys")
    a = bench_args(ap, "camvid-240x180", "camvid")
    res_file = Path(a.out) / "results.json"
    if not a.table:
        if a.data != "shapes" and not Path(a.data).exists():
            sys.exit(f"{a.data}: data folder not found (the CamVid default: ../shared/data/camvid-240x180)")
        size = ["--image-size", str(a.image_size)] if a.image_size else []
        for seed in a.seeds:
            for labels in a.labels:
                for method in a.methods:
                    key = f"{method}{a.tag}-n{labels}-{a.steps}-s{seed}"
                    run_once(key, ["--task", "segment", "--data", a.data, "--method", method, "--labels", str(labels),
                                   "--seed", str(seed), "--model", "unet", "--steps", str(a.steps), *size,
                                   "--eval-every", str(max(a.steps // 8, 1)),
                                   "--save-every", str(max(a.steps // 4, 1)), "--quiet", *a.extra],
                             Path(a.out) / key, res_file, a.rerun,
                             tag=a.tag, labels=labels, steps=a.steps, seed=seed, extra=a.extra)
    results = saved(res_file)
    print_machine()
    print("| labeled | method | steps | seed | test mIoU (val-selected) | test Dice | best val mIoU "
          "| final test mIoU | wall |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in sorted(results.values(), key=lambda r: (r["labels"], r["steps"], r["method"], r["seed"])):
        m = r["metrics"]
        dice = f"{m['test_dice']:.3f}" if "test_dice" in m else ""  # two classes only
        print(f"| {r['labels']} | {r['method']}{r.get('tag', '')} | {r['steps']} | {r['seed']} | {100 * m['test_miou']:.1f} | {dice} | "
              f"{100 * m.get('best_val_miou', float('nan')):.1f} | {100 * m['final_test_miou']:.1f} | "
              f"{r['timing']['wall_seconds'] / 60:.1f} min |")


if __name__ == "__main__":
    main()
