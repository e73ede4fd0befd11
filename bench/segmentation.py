"""Segmentation benchmark, CamVid 240x180, U-Net: a fraction of the 367 training images
labeled, the rest unlabeled.

    python bench/segmentation.py [--data ../shared/data/camvid-240x180] [--labels 46 92]
                           [--methods supervised fixmatch unimatch cps ae_pretrain mean_teacher]
                           [--steps 1000] [--seed 0] [-- more semisup train options]
    python bench/segmentation.py --table      # the table of every run saved so far, nothing run

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
    ap.add_argument("--image-size", type=int, default=128, help="square training crop")
    ap.add_argument("--seed", type=int, default=0)
    a = bench_args(ap, "camvid-240x180", "camvid")
    res_file = Path(a.out) / "results.json"
    if not a.table:
        if not Path(a.data).exists():
            sys.exit(f"{a.data}: CamVid folder not found (expected ../shared/data/camvid-240x180)")
        for labels in a.labels:
            for method in a.methods:
                key = f"{method}-n{labels}-{a.steps}-s{a.seed}"
                run_once(key, ["--task", "segment", "--data", a.data, "--method", method, "--labels", str(labels),
                               "--seed", str(a.seed), "--model", "unet", "--steps", str(a.steps),
                               "--image-size", str(a.image_size), "--eval-every", str(max(a.steps // 8, 1)),
                               "--save-every", str(max(a.steps // 4, 1)), "--quiet", *a.extra],
                         Path(a.out) / key, res_file, a.rerun,
                         method=method, labels=labels, steps=a.steps, seed=a.seed, extra=a.extra)
    results = saved(res_file)
    print_machine()
    print("| labeled | method | steps | seed | test mIoU (val-selected) | best val mIoU | final test mIoU "
          "| wall |")
    print("|---|---|---|---|---|---|---|---|")
    for r in sorted(results.values(), key=lambda r: (r["labels"], r["steps"], r["method"], r["seed"])):
        m = r["metrics"]
        print(f"| {r['labels']} | {r['method']} | {r['steps']} | {r['seed']} | {100 * m['test_miou']:.1f} | "
              f"{100 * m.get('best_val_miou', float('nan')):.1f} | {100 * m['final_test_miou']:.1f} | "
              f"{r['timing']['wall_seconds'] / 60:.1f} min |")


if __name__ == "__main__":
    main()
