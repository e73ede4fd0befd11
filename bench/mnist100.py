"""MNIST with 100 labels (10 per class), any methods, seeds 0-2.

    python bench/mnist100.py [--data ../shared/data/mnist] [--methods fixmatch ...] [--seeds 0 1 2]
                             [--steps N] [-- more semisup train options]
    python bench/mnist100.py --table      # the table of every run saved so far, nothing run

Each run is a plain `semisup train` into bench/out/; the table (final and best test accuracy,
train time summed over resumed segments, images per second) is printed as Markdown for
docs/benchmarks.md and saved as JSON.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from runs import bench_args, print_machine, run_once, saved

# CPU budget settings (see docs/benchmarks.md for why they differ from the paper's)
SETTINGS = ["--labels", "100", "--quiet"]
# per method: steps and batches for the CPU budget; a method missing here gets DEFAULT (and its
# own unlabeled ratio: 1 for the methods USB runs with uratio 1, 7 for the rest)
DEFAULT = {"steps": 4000, "batch-size": 32}
PER_METHOD = {
    "fixmatch": {"steps": 8000, "batch-size": 32, "unlabeled-ratio": 7},
    "flexmatch": {"steps": 8000, "batch-size": 32, "unlabeled-ratio": 7},
    "freematch": {"steps": 8000, "batch-size": 32, "unlabeled-ratio": 7},
    "sgan": {"steps": 45000},  # its paper's batches: 100 labeled + 100 unlabeled, Adam
}


def settings_for(method: str, steps: int | None) -> list[str]:
    s = dict(PER_METHOD.get(method, DEFAULT))
    if steps:
        s["steps"] = steps
    s.update({"eval-every": max(s["steps"] // 8, 1), "save-every": max(s["steps"] // 4, 1)})
    return [x for k, v in s.items() for x in (f"--{k}", str(v))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", nargs="+", default=["supervised", "pseudo_label", "fixmatch"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--steps", type=int, help="override the steps of every method")
    a = bench_args(ap, "mnist", "mnist100")
    res = Path(a.out) / "results.json"
    if a.table:
        print_table(saved(res))
        return
    if not Path(a.data).exists():
        sys.exit(f"{a.data}: MNIST IDX folder not found (expected ../shared/data/mnist)")
    for method in a.methods:
        for seed in a.seeds:
            run_once(f"{method}-s{seed}", ["--data", a.data, "--method", method, "--seed", str(seed), *SETTINGS,
                                           *settings_for(method, a.steps), *a.extra],
                     Path(a.out) / f"{method}-s{seed}", res, a.rerun)
    print_table(saved(res))


def print_table(saved: dict) -> None:
    """One row per method and step count, over the seeds saved for it."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in saved.values():
        groups.setdefault((r["method"], r["steps"]), []).append(r)
    rows = ["| method | steps | seeds | final test acc. (mean ± sd) | best test acc. (mean ± sd) | train time per run | images/s |",
            "|---|---|---|---|---|---|---|"]
    sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0  # noqa: E731
    for (method, steps), s in sorted(groups.items()):
        s.sort(key=lambda r: r["seed"])
        fin = [100 * r["metrics"]["test_accuracy"] for r in s]
        best = [100 * r["metrics"]["best_test_accuracy"] for r in s]
        train = [r["timing"]["train_seconds"] for r in s]
        ips = [r["timing"]["images_per_second"] for r in s]
        rows.append(f"| {method} | {steps} | {','.join(str(r['seed']) for r in s)} | {statistics.mean(fin):.2f} ± "
                    f"{sd(fin):.2f} ({', '.join(f'{v:.2f}' for v in fin)}) | {statistics.mean(best):.2f} ± "
                    f"{sd(best):.2f} | {statistics.mean(train) / 60:.1f} min | {statistics.mean(ips):.0f} |")
    print_machine()
    print("\n".join(rows))


if __name__ == "__main__":
    main()
