"""Do `semisup suggest`'s picks beat random ones? The active-learning benchmark of
docs/benchmarks.md ("Which images to label next").

From a seeded draw of --start labels (balanced over the classes), each strategy runs --rounds
rounds: `semisup suggest` on the last round's run picks --add images, their labels are revealed
from the data set's own (hidden) training labels, written into the picks.csv label column as a
user would, and `semisup train --add-labels` trains the next round from scratch with every
earlier round's picks, the same method and steps each round. Round 0 is shared by the strategies
of a seed. Resumable: a finished run (summary.json) or a filled picks.csv is kept.

    python bench/active.py --data ../shared/data/mnist --seeds 0 1 2            # bench/out/active
    python bench/active.py --table                                              # what is saved

Labels are revealed only for the training images the picks name (by index), read with the
project's own reader of the data set, so the hidden labels are those `semisup train` would see.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ["badge", "random", "typiclust", "margin", "entropy", "kcenter", "disagreement"]


def hidden_labels(data: str) -> tuple[list[int], list[str]]:
    """Every training image's label and the class names, as semisup reads the data set."""
    sys.path.insert(0, str(ROOT / "src"))
    from semisup.data.sources import load_source  # noqa: E402
    src = load_source(data)
    return [int(v) for v in src.train.y.tolist()], list(src.classes)


def train(out: Path, args, extra: list[str]) -> dict:
    if (out / "summary.json").exists():
        return json.loads((out / "summary.json").read_text())
    cmd = ["semisup", "train", "--data", args.data, "--labels", str(args.start), "--seed", str(args.seed),
           "--method", args.method, "--steps", str(args.steps), "--eval-every", str(args.steps),
           "--quiet", "--out", str(out)] + (["--overwrite"] if out.exists() else []) + args.train_args + extra
    subprocess.run(cmd, check=True)
    return json.loads((out / "summary.json").read_text())


def pick(run: Path, picks: Path, strategy: str, args, labels: list[int], classes: list[str]) -> Path:
    f = picks / "picks.csv"
    if f.exists():
        return f
    subprocess.run(["semisup", "suggest", str(run), "--n", str(args.add), "--strategy", strategy,
                    "--seed", str(args.seed), "--out", str(picks)], check=True, stdout=subprocess.DEVNULL)
    with open(f, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:  # the person labeling: the true class of each pick
        r["label"] = classes[labels[int(r["index"])]]
    tmp = f.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, f)
    return f


def results(out: Path) -> list[dict]:
    """Every finished run, read from its own summary.json (no shared results file, so processes
    may run side by side on any seeds or strategies). Round 0 is shared by a seed's strategies."""
    res = []
    for base in sorted(out.glob("s[0-9]*")):
        for strategy in (x for x in STRATEGIES if (base / x).is_dir()):
            runs = [base / "r0"] + sorted((base / strategy).glob("r[0-9]*"), key=lambda r: int(r.name[1:]))
            for run in (r for r in runs if (r / "summary.json").exists()):
                s = json.loads((run / "summary.json").read_text())
                res.append({"strategy": strategy, "round": int(run.name[1:]), "seed": int(base.name[1:]),
                            "num_labeled": s["num_labeled"], "test_accuracy": s["metrics"]["test_accuracy"]})
    return res


def table(out: Path) -> None:
    res = results(out)
    by: dict[tuple[str, int], dict[int, float]] = {}
    for r in res:
        by.setdefault((r["strategy"], r["round"]), {})[r["seed"]] = r["test_accuracy"]
    rounds = sorted({k[1] for k in by})
    strategies = [s for s in STRATEGIES if any(k[0] == s for k in by)]
    print("| strategy | " + " | ".join(f"round {k} ({res_labels(res, k)} labels)" for k in rounds) + " |")
    print("|---" * (len(rounds) + 1) + "|")
    for s in strategies:
        cells = []
        for k in rounds:
            v = by.get((s, k))
            if not v:
                cells.append("")
                continue
            accs = [100 * v[x] for x in sorted(v)]
            cells.append(", ".join(f"{a:.2f}" for a in accs) + f" (**{sum(accs) / len(accs):.2f}**, seeds "
                         + ",".join(map(str, sorted(v))) + ")")
        print(f"| {s} | " + " | ".join(cells) + " |")


def res_labels(res, k):
    return next((r["num_labeled"] for r in res if r["round"] == k), "?")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "active"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--strategies", nargs="+", default=STRATEGIES, choices=STRATEGIES)
    ap.add_argument("--start", type=int, default=20)
    ap.add_argument("--add", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--method", default="flexmatch")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--table", action="store_true")
    ap.add_argument("train_args", nargs="*", help="after --: more `semisup train` options for every run")
    args = ap.parse_args()
    out = Path(args.out)
    if args.table:
        table(out)
        return
    out.mkdir(parents=True, exist_ok=True)
    labels, classes = hidden_labels(args.data)

    for seed in args.seeds:
        args.seed = seed
        base = out / f"s{seed}"
        r0 = base / "r0"
        train(r0, args, [])
        for strategy in args.strategies:
            prev, files = r0, []
            for k in range(1, args.rounds + 1):
                files.append(pick(prev, base / strategy / f"picks{k}", strategy, args, labels, classes))
                run = base / strategy / f"r{k}"
                s = train(run, args, ["--add-labels", ",".join(map(str, files))])
                assert s["num_labeled"] == args.start + k * args.add, (run, s["num_labeled"])
                print(f"seed {seed} {strategy} round {k}: {s['num_labeled']} labels, "
                      f"test {100 * s['metrics']['test_accuracy']:.2f}%", flush=True)
                prev = run
    table(out)


if __name__ == "__main__":
    main()
