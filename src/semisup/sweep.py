"""How many labels: one run per (method, number of labels, seed) under OUT/runs/, resumable, then
OUT/results.json and OUT/report.html. The supervised method (the labeled images alone) is the
baseline each semi-supervised point is measured against: the proof that the unlabeled images
helped (DESIGN.md, "Who uses it").

Resumable run queue (`train_point`, shared with bench/runs.py): a finished folder (summary.json) is
skipped, an interrupted one resumes from its last checkpoint, one that another process is writing
is left to it. A stopped sweep therefore loses at most the steps since a run's last checkpoint."""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from .engine.runfolder import atomic_write, check_writable, run_state
from .errors import UserError
from .report import figure, save_figure

BASELINE = "supervised"  # the labeled images alone
MARKER = ".semisup-sweep"
FREE = ("device", "quiet", "log_every", "store")  # where a run trains and how it shows, not what it computes


def point_name(method: str, labels: int, seed: int) -> str:
    return f"{method}-n{labels}-s{seed}"


def train_point(out: Path, launch, rerun: bool = False) -> str:
    """Train the run in `out` unless it is done: 'finished' (summary.json is there: skipped),
    'running' (another process holds it: left alone), else `launch(resume)` with resume True for
    an interrupted run that saved checkpoints/last.pt (else it starts afresh, replacing what is
    there), and 'resumed' or 'trained'. `rerun`: train again whatever is there."""
    state = run_state(Path(out))
    if state == "running":
        return "running"
    if state == "finished" and not rerun:
        return "finished"
    resume = state == "interrupted" and (Path(out) / "checkpoints" / "last.pt").exists() and not rerun
    launch(resume)
    return "resumed" if resume else "trained"


# ---------------------------------------------------------------------------- the plan, checked
def plan(data: str, labels: list[int], methods: list[str], seeds: list[int], options: dict, out: Path):
    """Check everything before anything is written: the numbers, every method with the options
    (`config.resolve`), every label count against the data (the labeled draw), the output folder
    and any runs already in it (trained with other options: an error). Returns the points as
    (method, labels, seed, run folder, the options given to train), the methods in order with the
    baseline first, the task and the data read once (None where each run reads its own)."""
    from .config import resolve
    from .engine.runfolder import load_config
    from .methods import METHODS
    from .tasks import get_task

    labels, seeds = list(labels), list(seeds)
    if not labels or any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in labels):
        raise UserError(f"--labels {','.join(map(str, labels))}: give whole numbers of at least 1, e.g. 10,40,100")
    if not seeds or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in seeds):
        raise UserError(f"--seeds {','.join(map(str, seeds))}: give whole numbers of at least 0, e.g. 0,1,2")
    if not methods:
        raise UserError("--methods: give at least one method, e.g. supervised,fixmatch")
    labels, seeds, methods = sorted(set(labels)), list(dict.fromkeys(seeds)), list(dict.fromkeys(methods))
    for k in ("labels", "labels_per_class", "labeled_fraction", "method", "seed", "data"):
        if k in options:
            raise UserError(f"--{k.replace('_', '-')}: set by the sweep itself (--labels, --methods, --seeds, --data)")
    base = {**options, "data": data, "quiet": True}
    first = resolve({**base, "method": methods[0], "labels": labels[0], "seed": seeds[0]})
    task = get_task(first["task"])
    if BASELINE in METHODS.get(task.name, {}) and BASELINE not in methods:
        methods = [BASELINE, *methods]
    methods = sorted(methods, key=lambda m: m != BASELINE)
    out = Path(out)
    _check_out(out)
    cfgs = {}
    for m in methods:
        for n in labels:
            cfgs[m, n] = resolve({**base, "method": m, "labels": n, "seed": seeds[0]})
    classes = first["classes"].split(",") if isinstance(first["classes"], str) else first["classes"]
    source = task.read(str(data), True, classes, first["image_size"])
    for n in labels:
        task.draw(source, cfgs[methods[0], n])  # too many labels for the data: its one-line message
    points = []
    for m in methods:
        for n in labels:
            for s in seeds:
                run = out / "runs" / point_name(m, n, s)
                given = {**base, "method": m, "labels": n, "seed": s}
                state = run_state(run)
                if state == "foreign":
                    raise UserError(f"--out {out}: {run} is not a semisup run folder; remove it or choose another "
                                    "--out")
                if state in ("finished", "interrupted") and (run / "config.yaml").exists():
                    saved, cfg = load_config(run / "config.yaml"), {**cfgs[m, n], "seed": s}
                    differ = [k for k, v in cfg.items() if v is not None and k not in FREE and k in saved
                              and saved[k] != v]
                    if differ:
                        k = differ[0]
                        raise UserError(f"--out {out}: {run} was trained with --{k.replace('_', '-')} {saved[k]}, "
                                        f"this sweep asks {cfg[k]}; choose another --out, or remove {run} to "
                                        "train it again")
                points.append((m, n, s, run, given))
    shared = None if first.get("pretrained") else source  # a pretrained network may read photos at its own size
    return points, methods, task, shared


def _check_out(out: Path) -> None:
    """A sweep writes into a new or empty folder, or one holding a sweep (its marker)."""
    if out.exists():
        if not out.is_dir():
            raise UserError(f"--out {out}: is a file, not a folder; choose another --out")
        names = sorted(p.name for p in out.iterdir())
        if names and MARKER not in names:
            raise UserError(f"--out {out}: not a sweep folder (it holds {names[0]}); choose a new or empty folder "
                            "for --out")
    check_writable(out, f"--out {out}")


# ---------------------------------------------------------------------------- the sweep
def sweep(data: str, labels: list[int], methods: list[str], seeds: list[int] = (0,), options: dict | None = None,
          out: str | Path = "sweep", log=print) -> dict:
    """Train every point that is not finished yet (`train_point`), then write results.json and
    report.html (`write_report`). `log` receives one line per point. Returns the rows, the
    report's path and how many runs were trained, resumed and skipped."""
    from .run import train

    out = Path(out)
    points, methods, task, source = plan(data, labels, methods, list(seeds), dict(options or {}), out)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / MARKER).exists():
        atomic_write(out / MARKER, lambda p: p.write_text(json.dumps({"created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
                                                          + "\n"))
    counts = {"trained": 0, "resumed": 0, "finished": 0, "running": 0}
    for i, (m, n, s, run, given) in enumerate(points, 1):
        t0 = time.time()
        state = train_point(run, lambda resume: train(given, out=str(run), resume=resume, overwrite=not resume,
                                                      source=source))
        counts[state] += 1
        head = f"[{i}/{len(points)}] {point_name(m, n, s)}:"
        if state == "running":
            log(f"{head} another process is training it; left to it (run the sweep again when it is done)")
            continue
        summary = json.loads((run / "summary.json").read_text())
        score = task.summary_line(summary)
        log(f"{head} finished already: {score}" if state == "finished" else
            f"{head} {state} in {time.time() - t0:.0f} s: {score}")
    rows = collect(out, points, task)
    atomic_write(out / "results.json", lambda p: p.write_text(json.dumps(rows, indent=1) + "\n"))
    report = write_report(out, rows, methods, task, data)
    return {"rows": rows, "report": report, **counts}


def collect(out: Path, points, task) -> list[dict]:
    """One row per finished run: method, labels, seed, the final and best test score, the gain
    over the baseline with the same labels and seed, train seconds, the run folder (relative to
    `out`)."""
    p = task.primary
    rows = []
    for m, n, s, run, _ in points:
        f = run / "summary.json"
        if not f.exists():
            continue
        summary = json.loads(f.read_text())
        metrics = summary["metrics"]
        rows.append({"method": m, "labels": n, "seed": s, "num_labeled": summary["num_labeled"],
                     f"test_{p}": metrics[f"test_{p}"], "best": metrics.get(f"best_test_{p}"),
                     "train_seconds": summary["timing"]["train_seconds"], "run": run.relative_to(out).as_posix()})
    base = {(r["labels"], r["seed"]): r[f"test_{p}"] for r in rows if r["method"] == BASELINE}
    for r in rows:
        b = base.get((r["labels"], r["seed"]))
        r["gain"] = None if r["method"] == BASELINE or b is None else r[f"test_{p}"] - b
    return rows


# ---------------------------------------------------------------------------- the report
def pct(v) -> str:
    """A score as the report prints it: percent, two decimals ('' for none)."""
    return "" if v is None else f"{100 * v:.2f}"


def gain_pct(v) -> str:
    return "" if v is None else f"{100 * v:+.2f}"


def _groups(rows: list[dict], key: str) -> dict:
    """(method, labels) -> the rows' `key` values over seeds."""
    g = {}
    for r in rows:
        g.setdefault((r["method"], r["labels"]), []).append(r[key])
    return g


def write_report(out: Path, rows: list[dict], methods: list[str], task, data: str) -> Path:
    """OUT/report.html with its PNGs beside it: the test score against the number of labels
    (accuracy.png), the pseudo-label accuracy and mask rate over training of each
    semi-supervised method (training-<method>.png), and the tables. No network needed: the
    page links only the files beside it and the run folders."""
    from html import escape

    from .report import html_page, html_table

    p = task.primary
    score = f"test_{p}"
    by = _groups(rows, score)
    best = _groups(rows, "best")
    secs = _groups(rows, "train_seconds")
    labels = sorted({r["labels"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    shown = [m for m in methods if any(m == k[0] for k in by)]
    _plot_scores(out / "accuracy.png", by, shown, labels, p, Path(str(data)).name)
    body = [f"<p>Test {escape(p)} (%) of each method against the number of labeled images on "
            f"<b>{escape(str(data))}</b>, seeds {escape(', '.join(map(str, seeds)))}: the line is the mean over "
            f"seeds, the band the lowest to the highest. <b>{BASELINE}</b> trains on the labeled images alone; "
            f"the gain (the lower panel) is a method's mean minus {BASELINE}'s at the same number of labels.</p>",
            '<img src="accuracy.png" alt="test score against the number of labels">']
    head = ["method", "labels", "seeds", f"mean test {p}", "min", "max", f"mean best {p}", f"{BASELINE}",
            f"gain over {BASELINE}", "mean train s"]
    table = []
    for m in shown:
        for n in labels:
            v = by.get((m, n))
            if not v:
                continue
            b = by.get((BASELINE, n))
            mean, bmean = statistics.mean(v), (statistics.mean(b) if b else None)
            gain = None if m == BASELINE or bmean is None else mean - bmean
            bests = [x for x in best[m, n] if x is not None]
            table.append([m, n, len(v), pct(mean), pct(min(v)), pct(max(v)),
                          pct(statistics.mean(bests)) if bests else "", "" if m == BASELINE else pct(bmean),
                          gain_pct(gain),
                          f"{statistics.mean(secs[m, n]):.1f}"])
    body += ["<h2>Mean over seeds</h2>", html_table(head, table, numeric_from=1)]
    trained = [m for m in shown if m != BASELINE]
    curves = []
    for m in trained:
        name = f"training-{m}.png"
        if _plot_training(out / name, out, [r for r in rows if r["method"] == m], m):
            curves.append(f'<img src="{escape(name)}" alt="pseudo-label accuracy and mask rate of {escape(m)}">')
        else:
            curves.append(f"<p>{escape(m)} logs no pseudo-label accuracy or mask rate.</p>")
    if curves:
        body += ["<h2>Pseudo-labels over training</h2>",
                 "<p>The share of unlabeled images whose pseudo-label passes the method's confidence rule (mask "
                 "rate) and how many of those pseudo-labels are right (their hidden labels), mean over seeds, one "
                 "line per number of labels.</p>", *curves]
    runs = [[r["method"], r["labels"], r["seed"], r["num_labeled"], pct(r[score]), pct(r["best"]),
             gain_pct(r["gain"]), f"{r['train_seconds']:.1f}",
             _run_links(out, r["run"])] for r in rows]
    body += ["<h2>Every run</h2>", html_table(["method", "labels", "seed", "labeled images", f"test {p}",
                                               f"best {p}", f"gain over {BASELINE}", "train s", "run folder"],
                                              runs, numeric_from=1, raw_last=True, table_id="runs")]
    page = html_page(f"How many labels: {Path(str(data)).name}", body)
    path = out / "report.html"
    atomic_write(path, lambda f: f.write_text(page))
    return path


def _run_links(out: Path, run: str) -> str:
    """The run folder's name, linking its summary.json, and its curves where it has them."""
    from html import escape

    links = f'<a href="{escape(run)}/summary.json">{escape(run)}</a>'
    if (out / run / "curves.png").exists():
        links += f' (<a href="{escape(run)}/curves.png">curves</a>)'
    return links


def _plot_scores(path: Path, by: dict, methods: list[str], labels: list[int], metric: str, title: str) -> None:
    """Above: the test score against the labels, a line per method (mean over seeds, band from the
    lowest to the highest), the baseline dashed. Below, where there is a baseline: each method's
    gain over it at every point, in points, with the gain written beside the point."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    base = {n: statistics.mean(by[BASELINE, n]) for n in labels if by.get((BASELINE, n))}
    others = [m for m in methods if m != BASELINE]
    gains = bool(base) and bool(others)
    fig, axes = figure(2 if gains else 1, 1, figsize=(8, 6.8 if gains else 4.6), sharex=True, squeeze=False,
                       gridspec_kw={"height_ratios": [3, 1.4]} if gains else None)
    ax = axes[0, 0]
    colours = {BASELINE: "0.45", **{m: f"C{i}" for i, m in enumerate(others)}}
    for m in methods:
        xs = [n for n in labels if by.get((m, n))]
        style = dict(linestyle="--", marker="s") if m == BASELINE else dict(marker="o")
        ax.plot(xs, [100 * statistics.mean(by[m, n]) for n in xs], color=colours[m],
                label=f"{m} (labeled only)" if m == BASELINE else m, **style)
        ax.fill_between(xs, [100 * min(by[m, n]) for n in xs], [100 * max(by[m, n]) for n in xs],
                        color=colours[m], alpha=0.15, linewidth=0)
    ax.set_ylabel(f"test {metric} (%)")
    ax.set_title(f"{title}: test {metric} against the number of labels", fontsize=10)
    ax.legend(loc="lower right")
    if gains:
        g = axes[1, 0]
        g.axhline(0, color=colours[BASELINE], linestyle="--", linewidth=1)
        for j, m in enumerate(others):
            xs = [n for n in labels if by.get((m, n)) and n in base]
            ys = [100 * (statistics.mean(by[m, n]) - base[n]) for n in xs]
            g.plot(xs, ys, marker="o", color=colours[m], label=m)
            for n, y in zip(xs, ys):  # a row of numbers per method along the top, over its points
                g.text(n, 0.94 - 0.13 * j, f"{y:+.1f}", transform=g.get_xaxis_transform(), fontsize=8,
                       color=colours[m], ha="center", va="top")
        g.set_ylabel(f"gain over\n{BASELINE} (points)")
        lo, hi = g.get_ylim()
        lo, hi = min(lo, -1), max(hi, 1)
        rows = 0.13 * len(others) + 0.08  # the share of the panel the rows of numbers take
        g.set_ylim(lo, hi + (hi - lo) * rows / (1 - rows))
    axes[-1, 0].set_xlabel("labeled images (log scale)")
    for a in axes[:, 0]:
        a.set_xscale("log")
        a.set_xlim(labels[0] / 1.25, labels[-1] * 1.4)  # room for the last point's label
        a.set_xticks(labels)
        a.xaxis.set_major_formatter(ScalarFormatter())
        a.xaxis.set_minor_formatter(NullFormatter())
        a.grid(alpha=0.3, which="both")
    fig.tight_layout()
    save_figure(fig, path)


def _plot_training(path: Path, out: Path, rows: list[dict], method: str) -> bool:
    """Pseudo-label accuracy and mask rate against the step, mean over seeds, a line per label
    count; False (nothing written) where the method logs neither."""
    from .engine.runfolder import RunFolder

    keys = ("pseudo_label_accuracy", "mask_rate")
    series = {}  # labels -> key -> step -> values over seeds
    for r in rows:
        for e in RunFolder(out / r["run"]).metrics():
            for k in keys:
                if e.get(k) is not None:
                    series.setdefault(r["labels"], {}).setdefault(k, {}).setdefault(e["step"], []).append(e[k])
    if not series:
        return False
    fig, axes = figure(1, 2, figsize=(10, 3.6), sharex=True)
    for j, n in enumerate(sorted(series)):
        for ax, k in zip(axes, keys):
            steps = sorted(series[n].get(k, {}))
            if steps:
                ax.plot(steps, [100 * statistics.mean(series[n][k][s]) for s in steps], marker=".",
                        color=f"C{j}", label=f"{n} labels")
    for ax, k in zip(axes, keys):
        ax.set_xlabel("step")
        ax.set_ylabel(f"{k.replace('_', ' ')} (%)")
        ax.set_ylim(0, 102)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{method}: pseudo-labels over training")
    fig.tight_layout()
    save_figure(fig, path)
    return True


