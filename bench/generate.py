"""Generation benchmark, MNIST with 100 labels: every generation method, beside `cgan_supervised`
on the 100 labeled images and on all 60,000 labels (the upper bound).

    python bench/generate.py [--data ../shared/data/mnist] [--methods ssvae cgan_pseudo ...]
                             [--steps N] [--seed 0] [-- more semisup train options]
    python bench/generate.py --table      # the table of every run saved so far, nothing run

`cgan_pseudo-labeler` takes its pseudo-labels from a finished classification run (`--labeler`,
by default bench/out/mnist100/fixmatch-s0 from bench/mnist100.py). Reported per run: the
method's classifier test error, conditional accuracy and local FID (in the feature space of an
evaluator trained on all 60,000 labels, cached; its floor is real training against real test
images), train time (summed over resumed segments; evaluation excluded). Saved after every
run (bench/out/generate/results.json); a saved run is not run again, an interrupted one is
resumed (bench/runs.py).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runs import bench_args, print_machine, run_once, saved

STEPS = 3000  # the GANs
# per method: steps and options for the CPU budget (ssvae's MLPs are cheap per step; M1+M2 with
# its own defaults: --alpha 1 --lr 0.001 --unlabeled-ratio 3 --m1-share 0.5)
SETTINGS = {"ssvae": (16000, ["--stack-m1", "true"])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", nargs="+", default=["cgan_supervised", "cgan_pseudo", "cgan_pseudo-labeler",
                                                      "triple_gan", "ssvae", "cgan_supervised-all"],
                    help="generation methods; NAME-all trains with every label, NAME-labeler takes its "
                         "pseudo-labels from --labeler")
    ap.add_argument("--labeler", default=str(Path(__file__).parent / "out" / "mnist100" / "fixmatch-s0"),
                    help="a finished classification run on the same data (default: the MNIST-100 fixmatch run)")
    ap.add_argument("--steps", type=int, help=f"override the steps of every method (GANs {STEPS})")
    ap.add_argument("--seed", type=int, default=0)
    a = bench_args(ap, "mnist", "generate")
    res_file = Path(a.out) / "results.json"
    if not a.table:
        if not Path(a.data).exists():
            sys.exit(f"{a.data}: MNIST IDX folder not found (expected ../shared/data/mnist)")
        for name in a.methods:
            method, _, variant = name.partition("-")
            steps, options = SETTINGS.get(method, (STEPS, []))
            steps = a.steps or steps
            key = f"{name}-{steps}-s{a.seed}"
            labels = [] if variant == "all" else ["--labels", "100"]
            if variant == "labeler":
                labels += ["--labeler", a.labeler]
            run_once(key, ["--task", "generate", "--data", a.data, "--method", method, *labels,
                           "--seed", str(a.seed), "--steps", str(steps), "--eval-every", str(max(steps // 6, 1)),
                           "--save-every", str(max(steps // 6, 1)), "--quiet", *options, *a.extra],
                     Path(a.out) / key, res_file, a.rerun, label=name, extra=[*options, *a.extra])
    results = saved(res_file)
    print_machine()
    print("| method | labels | steps | seed | classifier test error | conditional accuracy | local FID (floor) | train time |")
    print("|---|---|---|---|---|---|---|---|")
    for r in sorted(results.values(), key=lambda r: (r["steps"], r["label"], r["seed"])):
        m = r["metrics"]
        name = f"{r['label']} `{' '.join(r['extra'])}`" if r.get("extra") else r["label"]
        print(f"| {name} | {r['num_labeled']} | {r['steps']} | {r['seed']} | "
              f"{100 * (1 - m['test_accuracy']):.2f}% | {100 * m['conditional_accuracy']:.1f}% | "
              f"{m['local_fid']:.2f} ({m['local_fid_floor']:.2f}) | {r['timing']['train_seconds'] / 60:.1f} min |")


if __name__ == "__main__":
    main()
