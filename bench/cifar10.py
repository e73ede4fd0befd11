"""CIFAR-10, WRN-28-2, N labels: methods trained for the same wall-clock budget each.

    python bench/cifar10.py [--data ../shared/data/cifar10-jpg.tar.gz] [--labels 4000 250]
                            [--methods supervised fixmatch flexmatch freematch] [--minutes 60]
                            [--seed 0] [-- more semisup train options]

Every run uses FixMatch's batches (64 labeled + 7 x 64 unlabeled; supervised: 64 labeled) and
the cosine schedule over the steps that fit the budget: a 10-step probe measures each
method's seconds per step, then the run gets (budget - evaluations) / (seconds per step) steps.
Prints test accuracy against steps and images per second as Markdown for docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVALS = 6  # evaluations per run (10,000 test images each)


def train(a, method: str, labels: int, out: Path, steps: int, evals: int, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "semisup", "train", "--data", a.data, "--method", method,
           "--labels", str(labels), "--seed", str(a.seed), "--model", "wrn28_2",
           "--batch-size", "64", "--unlabeled-ratio", "7", "--steps", str(steps),
           "--eval-every", str(max(steps // evals, 1)), "--save-every", str(steps),
           "--out", str(out), "--overwrite", "--quiet", *extra]
    print(" ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True)
    return json.loads((out / "summary.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"))
    ap.add_argument("--labels", nargs="+", type=int, default=[4000, 250])
    ap.add_argument("--methods", nargs="+", default=["supervised", "fixmatch", "flexmatch", "freematch"])
    ap.add_argument("--minutes", type=float, default=60.0, help="wall-clock budget per run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "cifar10"))
    ap.add_argument("extra", nargs="*", help="more `semisup train` options, after --")
    a = ap.parse_args()
    if not Path(a.data).exists():
        sys.exit(f"{a.data}: CIFAR-10 image-folder archive not found (expected ../shared/data/cifar10-jpg.tar.gz)")
    res_file = Path(a.out) / "results.json"
    results = json.loads(res_file.read_text()) if res_file.exists() else {}
    for labels in a.labels:
        for method in a.methods:
            probe = train(a, method, labels, Path(a.out) / "probe", 10, 1, a.extra)
            per_step = probe["timing"]["train_seconds"] / 10
            eval_s = probe["timing"]["wall_seconds"] - probe["timing"]["train_seconds"]  # one evaluation
            steps = max(int((a.minutes * 60 - EVALS * eval_s) / per_step), EVALS)
            out = Path(a.out) / f"{method}-n{labels}-s{a.seed}"
            s = train(a, method, labels, out, steps, EVALS, a.extra)
            curve = [(r["step"], r["test_accuracy"]) for r in map(json.loads, (out / "metrics.jsonl").open())
                     if "test_accuracy" in r]
            results[f"{method}-n{labels}-s{a.seed}"] = {**s, "curve": curve}
            res_file.parent.mkdir(parents=True, exist_ok=True)
            res_file.write_text(json.dumps(results, indent=1))
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {__import__('torch').__version__}, {a.minutes:g} min per run\n")
    print("| labels | method | steps | test acc. at steps (final) | best | images/s | wall |")
    print("|---|---|---|---|---|---|---|")
    for labels in a.labels:
        for method in a.methods:
            r = results[f"{method}-n{labels}-s{a.seed}"]
            curve = ", ".join(f"{100 * acc:.1f}@{st}" for st, acc in r["curve"])
            print(f"| {labels} | {method} | {r['steps']} | {curve} | {100 * r['metrics']['best_test_accuracy']:.1f} | "
                  f"{r['timing']['images_per_second']:.0f} | {r['timing']['wall_seconds'] / 60:.1f} min |")


if __name__ == "__main__":
    main()
