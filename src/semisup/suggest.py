"""Which images to label next: rank a finished run's unlabeled training images by how much a
label for each would teach the model (active learning), write them as a picks.csv with an empty
label column and a contact sheet (`data.labels` reads them back for `semisup train --add-labels`).

The pool is the run's unlabeled training images less its labeled ones (drawn from its seed, and
those of its RUN/labels.csv), at most `pool_limit` of them drawn at random from `seed`, scored in
one batched pass of the run's evaluated (EMA) network on the evaluation view (the images as
they are, unaugmented). Each strategy returns its picks best first; `score` is what it ranked by:

- margin: the smallest gap between the two most probable classes, p1 - p2 (Scheffer et al. 2001,
  "Active hidden Markov models"); ascending.
- entropy: the highest predictive entropy -sum p log p (Settles 2009, "Active learning literature
  survey", Sec. 3.1); descending.
- disagreement: the symmetric KL divergence sum (p - q)(log p - log q) between the live network
  and its EMA (a two-member committee, Seung et al. 1992, "Query by committee"), or, where the
  two are the same weights (--ema 0), between the evaluation view and a strong (RandAugment)
  view, drawn from `seed`; descending.
- kcenter: k-center greedy over the penultimate features (Sener & Savarese 2018, "Active learning
  for convolutional neural networks: a core-set approach", Alg. 1): each pick is the image
  farthest (L2) from the labeled images and the earlier picks; in the order picked, `score` the
  distance at its pick (non-increasing).
- badge: BADGE (Ash et al. 2020, "Deep batch active learning by diverse, uncertain
  gradient lower bounds", Alg. 1): the gradient embedding of the last layer at the predicted
  class, g = (p - onehot(argmax p)) (x) features, seeded by k-means++ (the largest |g| first, then
  each image with probability proportional to its squared distance to the nearest pick). The
  distances come from <g_i, g_j> = <q_i, q_j> <f_i, f_j>, so g (classes x features long) is
  never built; in the order picked, `score` the distance at its pick (not monotonic: sampled).
- typiclust: the default for classification, TypiClust (Hacohen, Dekel & Weinshall 2022, "Active learning on a budget: opposite
  strategies suit high and low budgets", TPC-RP, Alg. 1): k-means (K = labeled + n, at most
  500, scikit-learn) over the L2-normalised penultimate features of the pool and the labeled
  images; each pick comes from the cluster holding the fewest labeled images and picks (ties:
  the largest), and is its most typical image, typicality = 1 / the mean distance to its 20
  nearest neighbours in the cluster. Made for the few-labels regime, where uncertainty picks
  fall on outliers; `score` the typicality, in the order picked. The default because it was the
  one strategy ahead of random at every round on MNIST from 20 labels (docs/benchmarks.md,
  "Which images to label next"); BADGE fell behind random at the first round there.
- random: a uniform draw from `seed`; `score` the draw, ascending.

Segmentation runs take entropy (their default) and margin, each image scored by the mean over its
pixels."""
from __future__ import annotations

import csv
from pathlib import Path

import torch

from .data.labels import PICKS, image_path, read_rows
from .errors import UserError

STRATEGIES = ("badge", "margin", "entropy", "disagreement", "kcenter", "typiclust", "random")
PICKS_HEADER = ("index", "path", "predicted", "confidence", "score", "reason", "label")
LABELS_HEADER = ("index", "path", "class", "round", "source")
POOL_LIMIT = 20000  # images scored at most, drawn at random: a pass over them takes seconds on a CPU
BATCH = 256


# ---------------------------------------------------------------------------- labels out
def write_labels(path: Path, data, spec: str) -> None:
    """RUN/labels.csv: each labeled image (index, path, class, round, source: 'draw' or the file
    that labeled it); the class is empty for segmentation, whose labels are masks."""
    from .infer import _write_csv

    src = data.source
    rounds = data.rounds.tolist() if data.rounds is not None else [0] * len(data.labeled)
    classes = src.train.masks is None
    rows = [(i, image_path(src, spec, i), data.classes[int(src.train.y[i])] if classes else "", r,
             data.round_names[r]) for i, r in zip(data.labeled.tolist(), rounds)]
    _write_csv(Path(path), LABELS_HEADER, rows)


def _labels_of_run(run_dir: str) -> list[int]:
    """The image indices RUN/labels.csv lists ([] where it has none, or is unreadable)."""
    try:
        with open(Path(run_dir) / "labels.csv", newline="") as f:
            return [int(r["index"]) for r in csv.DictReader(f)]
    except (OSError, KeyError, TypeError, ValueError, csv.Error):
        return []


# ---------------------------------------------------------------------------- scoring
@torch.no_grad()
def _outputs(model, x: torch.Tensor, device, features: bool, view=None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Class probabilities (segmentation: N x K x H x W per image, kept on the device only batch
    by batch: see `_pixel_scores`) and, with `features`, the penultimate features of uint8 images."""
    from .data.views import to_unit

    model.eval()
    probs, feats = [], []
    for i in range(0, len(x), BATCH):
        xb = x[i:i + BATCH].to(device)
        xb = view(xb) if view is not None else to_unit(xb)
        if features:
            f = model.features(xb)
            feats.append(f.float().flatten(1))
            probs.append(model.head(f).float().softmax(1))
        else:
            probs.append(model(xb).float().softmax(1))
    return torch.cat(probs), torch.cat(feats) if features else None


@torch.no_grad()
def _pixel_scores(model, x: torch.Tensor, device, strategy: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Segmentation: per image, the mean over its pixels of the margin (or entropy) and of the top
    probability."""
    from .data.views import to_unit

    model.eval()
    scores, conf = [], []
    for i in range(0, len(x), 8):  # whole images: activations grow with the pixels
        p = model(to_unit(x[i:i + 8].to(device))).float().softmax(1)
        scores.append((_margins(p) if strategy == "margin" else _entropies(p)).flatten(1).mean(1))
        conf.append(p.amax(1).flatten(1).mean(1))
    return torch.cat(scores), torch.cat(conf)


def _margins(p: torch.Tensor) -> torch.Tensor:
    top = p.topk(min(2, p.shape[1]), 1).values
    return top[:, 0] - (top[:, 1] if p.shape[1] > 1 else 0)


def _entropies(p: torch.Tensor) -> torch.Tensor:
    return -(p * p.clamp_min(1e-12).log()).sum(1)


def _kcenter(f: torch.Tensor, centers: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k-center greedy (Sener & Savarese 2018, Alg. 1): n picks, each the farthest from the centers."""
    d = torch.full((len(f),), float("inf"), device=f.device)
    for i in range(0, len(centers), 4096):
        d = torch.minimum(d, torch.cdist(f, centers[i:i + 4096]).amin(1))
    picks, dist = [], []
    for _ in range(n):
        j = int(d.argmax())
        picks.append(j)
        dist.append(float(d[j]))
        d = torch.minimum(d, (f - f[j]).norm(dim=1))
        d[j] = -1.0  # never again
    return torch.tensor(picks), torch.tensor(dist)


def _badge(p: torch.Tensor, f: torch.Tensor, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """BADGE (Ash et al. 2020, Alg. 1): k-means++ seeding over g = (p - onehot(argmax p)) (x) f, with
    |g_i - g_j|^2 = |g_i|^2 + |g_j|^2 - 2 <q_i, q_j> <f_i, f_j>; the distance of each pick (the first:
    its norm)."""
    q = p.clone()
    q[torch.arange(len(p), device=p.device), p.argmax(1)] -= 1
    norm2 = (q * q).sum(1) * (f * f).sum(1)
    j = int(norm2.argmax())
    picks, dist = [j], [float(norm2[j].sqrt())]
    d2 = torch.full_like(norm2, float("inf"))
    taken = torch.zeros(len(p), dtype=torch.bool, device=p.device)
    for _ in range(n - 1):
        taken[j] = True
        d2 = torch.minimum(d2, (norm2 + norm2[j] - 2 * (q @ q[j]) * (f @ f[j])).clamp_min(0))
        w = torch.where(taken, 0.0, d2).double().cpu()
        if not float(w.sum()) > 0:  # the rest sit on the picks: any of them
            w = (~taken).double().cpu()
        j = int(torch.multinomial(w, 1, generator=g))
        picks.append(j)
        dist.append(float(d2[j].sqrt()))
    return torch.tensor(picks), torch.tensor(dist)


def _typiclust(f: torch.Tensor, fl: torch.Tensor, n: int, seed: int,
               knn: int = 20, max_clusters: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """TypiClust (Hacohen et al. 2022, TPC-RP): the pool's features f, the labeled images' fl; n picks
    (indices into f) and their typicality."""
    from sklearn.cluster import KMeans

    allf = torch.nn.functional.normalize(torch.cat([f, fl]).float(), dim=1).cpu()
    k = max(1, min(len(fl) + n, max_clusters, len(allf)))
    lab = torch.as_tensor(KMeans(k, n_init=1, random_state=seed).fit_predict(allf.numpy()), dtype=torch.long)
    size = torch.bincount(lab, minlength=k)
    covered = torch.bincount(lab[len(f):], minlength=k)  # labeled images per cluster
    free = torch.ones(len(f), dtype=torch.bool)
    picks, typ = [], []
    for _ in range(n):
        pool_left = torch.bincount(lab[:len(f)][free], minlength=k)
        # fewest labeled first, then the largest; clusters with nothing left to pick are out
        key = torch.where(pool_left > 0, covered.double() * (len(allf) + 1) - size.double(), float("inf"))
        c = int(key.argmin())
        members = (free & (lab[:len(f)] == c)).nonzero().flatten()
        pts = allf[:len(f)][members]
        d = torch.cdist(pts, allf[lab == c])
        kk = min(knn + 1, d.shape[1])
        mean_d = d.topk(kk, 1, largest=False).values[:, 1:].mean(1) if kk > 1 else torch.zeros(len(pts))
        t = 1.0 / (mean_d + 1e-8)
        j = int(t.argmax())
        picks.append(int(members[j]))
        typ.append(float(t[j]))
        free[members[j]] = False
        covered[c] += 1
    return torch.tensor(picks), torch.tensor(typ)


def _live_model(run_dir: str, meta: dict, task, ema_model):
    """The run's live network (the method's, not the EMA's), or None where its weights are the EMA's."""
    from .infer import read_run

    ckpt, _ = read_run(run_dir)
    live = {k[len("model."):]: v for k, v in ckpt.get("method", {}).items() if k.startswith("model.")}
    ema = ema_model.state_dict()
    if set(live) != set(ema) or all(torch.equal(live[k], v.cpu()) for k, v in ema.items()):
        return None
    model = task.build_model(meta["model"], (meta["channels"], *meta["size"]), len(meta["classes"]))
    model.load_state_dict(live)
    return model


def _symmetric_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    p, q = p.clamp_min(1e-12), q.clamp_min(1e-12)
    return ((p - q) * (p.log() - q.log())).sum(1)


# ---------------------------------------------------------------------------- the entry point
def _check_out(out: Path) -> None:
    """Refuse, before any work, an --out that is a file or whose picks.csv has labels filled in."""
    from .engine.runfolder import check_writable

    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file; give a folder for {PICKS} and picks.png")
    check_writable(out, f"--out {out}")
    picks = out / PICKS
    if picks.exists():
        try:
            filled = sum(1 for _, r in read_rows(str(picks)) if (r.get("label") or "").strip())
        except UserError:
            filled = 0
        if filled:
            raise UserError(f"--out {out}: its {PICKS} has {filled} labels filled in, which a new one would replace; "
                            f"train with --add-labels {picks}, or choose another --out")


def suggest(run_dir: str, n: int = 50, strategy: str | None = None, seed: int = 0, pool_limit: int = POOL_LIMIT,
            out: str | None = None, device: str | None = None) -> list[dict]:
    """The `n` unlabeled training images of a finished run to label next, by `strategy` (the module
    docstring), best first: rows with index (into the training images), path, predicted (class),
    confidence, score, reason and an empty label. With `out`, also OUT/picks.csv (written
    atomically) and OUT/picks.png, the picks' thumbnails titled with their predicted class. Every
    check is made before anything is written."""
    from .engine.runfolder import run_state
    from .infer import _write_csv, load_run, task_of_run, training_data

    if strategy is not None and strategy not in STRATEGIES:
        raise UserError(f"--strategy {strategy}: unknown; choose one of {', '.join(STRATEGIES)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UserError(f"--n {n}: must be a whole number of images, at least 1")
    if isinstance(pool_limit, bool) or not isinstance(pool_limit, int) or pool_limit < 1:
        raise UserError(f"--pool-limit {pool_limit}: must be a whole number of images, at least 1")
    state = run_state(Path(run_dir)) if Path(run_dir).is_dir() else "foreign"
    if state == "running":
        raise UserError(f"{run_dir}: the run is still training; suggest from it once it has finished")
    if state == "interrupted":
        raise UserError(f"{run_dir}: the run stopped before it finished; `semisup train --out {run_dir} --resume` "
                        "finishes it")
    model, meta, _ = load_run(run_dir)  # its messages for a folder that is not a run
    if state != "finished":
        raise UserError(f"{run_dir}: the run has not finished (no summary.json); suggest from a finished run")
    task = task_of_run(meta)
    if not task.suggest_strategies:
        raise UserError(f"{run_dir}: {task.no_suggest}")
    strategy = strategy or task.suggest_strategies[0]  # the task's default: classification typiclust
    if strategy not in task.suggest_strategies:
        raise UserError(f"strategy {strategy} is for classification runs; use "
                        f"{' or '.join(task.suggest_strategies)} for {task.noun} ({run_dir} is a {task.noun} run)")
    features = strategy in ("kcenter", "badge", "typiclust")
    if features and not (hasattr(model, "features") and hasattr(model, "head")):
        raise UserError(f"--strategy {strategy}: the network '{meta['model']}' has no features and head to read; "
                        "use margin, entropy or disagreement")
    if out is not None:
        _check_out(Path(out))
    spec = training_data(run_dir, meta)
    if spec is None:
        raise UserError(f"{run_dir}: its training data {meta['config']['data']} is not at "
                        f"{meta.get('data_path') or meta['config']['data']} (nor relative to here or to the run "
                        "folder); put it back there")
    if out is not None and Path(spec).is_dir() and Path(out).resolve().is_relative_to(Path(spec).resolve()):
        raise UserError(f"--out {out}: inside the data folder {spec}, where picks.png would be read as data next "
                        "time; choose an --out outside it")
    cfg = meta["config"]
    src = task.read(spec, True, meta["classes"], cfg.get("image_size"))
    data = task.draw(src, {**cfg, "add_labels": None})  # the drawn set; the added ones are in labels.csv
    labeled = torch.zeros(len(src.train.y), dtype=torch.bool)
    labeled[data.labeled] = True
    labeled[[i for i in _labels_of_run(run_dir) if 0 <= i < len(labeled)]] = True
    in_pool = torch.zeros_like(labeled)
    in_pool[data.unlabeled] = True
    pool = (in_pool & ~labeled).nonzero().flatten()
    if len(pool) == 0:
        raise UserError(f"{run_dir}: every training image of {spec} is labeled; there is nothing to suggest")
    g = torch.Generator().manual_seed(seed)
    if len(pool) > pool_limit:
        pool = pool[torch.randperm(len(pool), generator=g)[:pool_limit]].sort().values
    n = min(n, len(pool))
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(dev)
    x = src.train.x[pool]
    if task.output == "masks":
        score, conf = _pixel_scores(model, x, dev, strategy)
        order = score.argsort(descending=strategy == "entropy")[:n].cpu()
        picked, predicted = score.cpu()[order], [""] * n
        conf = conf.cpu()[order]
        reasons = [f"mean pixel {strategy} {s:.3g}" for s in picked.tolist()]
    else:
        p, f = _outputs(model, x, dev, features)
        if strategy == "margin":
            s = _margins(p).cpu()
            order = s.argsort()[:n]
            picked, reasons = s[order], [f"margin {v:.3g}" for v in s[order].tolist()]
        elif strategy == "entropy":
            s = _entropies(p).cpu()
            order = s.argsort(descending=True)[:n]
            picked, reasons = s[order], [f"entropy {v:.3g}" for v in s[order].tolist()]
        elif strategy == "disagreement":
            live = _live_model(run_dir, meta, task, model)
            if live is not None:
                q, _ = _outputs(live.to(dev), x, dev, False)
                why = "live vs EMA weights"
            else:  # one set of weights: the evaluation view against a strong view
                views = task.views(data, cfg)
                with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
                    torch.manual_seed(seed)
                    q, _ = _outputs(model, x, dev, False, view=lambda xb: views(xb, "strong"))
                why = "plain vs strong view"
            s = _symmetric_kl(p, q).cpu()
            order = s.argsort(descending=True)[:n]
            picked, reasons = s[order], [f"symmetric KL {v:.3g} ({why})" for v in s[order].tolist()]
        elif strategy == "kcenter":
            fl = _outputs(model, src.train.x[labeled.nonzero().flatten()], dev, True)[1]  # the first centers
            order, picked = _kcenter(f, fl, n)
            reasons = [f"k-center distance {v:.3g}" for v in picked.tolist()]
        elif strategy == "typiclust":
            fl = _outputs(model, src.train.x[labeled.nonzero().flatten()], dev, True)[1]
            order, picked = _typiclust(f, fl, n, seed)
            reasons = [f"typicality {v:.3g}" for v in picked.tolist()]
        elif strategy == "badge":
            order, picked = _badge(p, f, n, g)
            reasons = [f"gradient-embedding {'norm' if k == 0 else 'distance'} {v:.3g}"
                       for k, v in enumerate(picked.tolist())]
        else:
            u = torch.rand(len(pool), generator=g)
            order = u.argsort()[:n]
            picked, reasons = u[order], ["random draw"] * n
        order = order.cpu()
        conf, cls = p.cpu()[order].max(1)
        predicted = [meta["classes"][c] for c in cls.tolist()]
    index = pool[order].tolist()
    rows = [{"index": i, "path": image_path(src, spec, i), "predicted": c, "confidence": float(cf),
             "score": float(s), "reason": r, "label": "", "strategy": strategy}
            for i, c, cf, s, r in zip(index, predicted, conf.tolist(), picked.tolist(), reasons)]
    if out is not None:
        from .report import save_contact_sheet

        dest = Path(out)
        _write_csv(dest / PICKS, PICKS_HEADER, ([r["index"], r["path"], r["predicted"], f"{r['confidence']:.4f}",
                                                 f"{r['score']:.6g}", r["reason"], ""] for r in rows))
        titles = [f"{r['predicted']} ({r['confidence']:.2f})" if r["predicted"] else r["reason"] for r in rows]
        save_contact_sheet(src.train.x[index], titles, dest / "picks.png")
    return rows
