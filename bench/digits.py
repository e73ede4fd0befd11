"""The built-in digits with 4 labels per class: supervised, pseudo_label and fixmatch at the
default settings of `semisup train`, seeds 0-2. Prints a Markdown table for docs/benchmarks.md.

    python bench/digits.py [--seeds 0 1 2]
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from semisup.api import train

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", nargs="+", default=["supervised", "pseudo_label", "fixmatch"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "digits"))
    a = ap.parse_args()
    print("| method | seeds | final test acc. (each seed) | mean | best (mean) | train time per run |")
    print("|---|---|---|---|---|---|")
    for method in a.methods:
        runs = [train({"method": method, "seed": s, "quiet": True}, out=f"{a.out}/{method}-s{s}",
                      overwrite=True)[0] for s in a.seeds]
        fin = [100 * r["metrics"]["test_accuracy"] for r in runs]
        best = [100 * r["metrics"]["best_test_accuracy"] for r in runs]
        t = statistics.mean(r["timing"]["train_seconds"] for r in runs)
        print(f"| {method} | {','.join(map(str, a.seeds))} | {', '.join(f'{v:.1f}' for v in fin)} | "
              f"{statistics.mean(fin):.1f} | {statistics.mean(best):.1f} | {t:.0f} s |", flush=True)


if __name__ == "__main__":
    main()
