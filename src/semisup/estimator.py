"""scikit-learn-style fit/predict on arrays (DESIGN.md "estimator.py"), for images held in
memory rather than in folders: `SemiSupervisedClassifier(method="fixmatch").fit(X, y)` with
`y = -1` marking the unlabeled images, as in `sklearn.semi_supervised`.

It is a thin layer over the library: the options are checked by `config.resolve` (the command
line's messages), the arrays become a `data.Source`, and `run.prepare` + `engine.Trainer` train
it, or `run.train` into a run folder where `out` is given. The images are quantised to uint8,
the form every semisup pipeline holds them in."""
from __future__ import annotations

import numbers
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from .data.decode import channels_first
from .errors import UserError

DATA_NAME = "fit(X, y)"  # the data's name in the config and summary: arrays have no path
# run options that are fit's arrays, not parameters, with what to do instead
NOT_PARAMETERS = {
    "task": "SemiSupervisedClassifier trains classifiers (task classify)",
    "data": "the data are the X and y given to fit",
    "classes": "the classes are the sorted labels of y (classes_)",
    "image_size": "resize the images before fit",
    "labels": "the labeled images are those whose y is not -1; set more of y to -1 to use fewer",
    "labels_per_class": "the labeled images are those whose y is not -1; set more of y to -1 to use fewer",
    "labeled_fraction": "the labeled images are those whose y is not -1; set more of y to -1 to use fewer",
    "resume": "fit trains from the start",
}
LAYOUTS = "(N, H, W), (N, H, W, C) or (N, C, H, W) with C 1 or 3"


def as_images(X, what: str = "X") -> torch.Tensor:
    """Images as the (N, C, H, W) uint8 tensor semisup trains on. uint8 is taken as it is; floats
    must lie in [0, 1] and are scaled to 0..255 and rounded. Layout: 3-D is (N, H, W), gray; 4-D
    is channels first where axis 1 is 1 or 3, else channels last where the last axis is 1 or 3
    (`data.decode.channels_first`, the rule NPZ files are read by)."""
    a = np.asarray(X)
    if a.dtype.kind == "f":
        if a.size and not np.isfinite(a).all():
            raise UserError(f"{what}: holds NaN or infinite values; give finite floats in [0, 1] or uint8 images")
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if lo < 0 or hi > 1:
            raise UserError(f"{what}: float values from {lo:g} to {hi:g} are outside [0, 1]; scale them to [0, 1] "
                            "(e.g. X / X.max()) or give uint8 images (0-255)")
        a = np.rint(a * 255).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise UserError(f"{what}: dtype {a.dtype}; give uint8 images (0-255) or floats in [0, 1]")
    nchw = channels_first(a)
    if nchw is None:
        raise UserError(f"{what}: shape {a.shape}; give images {LAYOUTS}")
    return torch.from_numpy(np.ascontiguousarray(nchw))


def _unlabeled(y: np.ndarray) -> np.ndarray:
    """Where y is -1 (in an array of strings, "-1")."""
    if y.dtype.kind in "iufb":
        return y == -1
    if y.dtype.kind in "US":
        return y == y.dtype.type("-1")
    return np.array([isinstance(v, numbers.Number) and v == -1 for v in y.tolist()], dtype=bool)


def _encode(y, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(classes: the sorted labels of the labeled entries; codes: each labeled entry's index in
    classes; labeled: where y is not -1), after checking y against N images."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise UserError(f"y: shape {y.shape}; give a 1-D array of one label per image (-1 for unlabeled), "
                        "e.g. y.ravel()")
    if len(y) != n:
        raise UserError(f"y: {len(y)} labels for {n} images in X; give one label per image (-1 for unlabeled)")
    if y.dtype.kind == "f" and np.isnan(y).any():
        raise UserError("y: holds NaN; mark the unlabeled images -1")
    labeled = ~_unlabeled(y)
    if not labeled.any():
        raise UserError("y: every label is -1 (unlabeled); label at least one image of each class")
    try:
        classes, codes = np.unique(y[labeled], return_inverse=True)
    except TypeError:
        raise UserError("y: labels of several types that do not sort together; give labels of one type "
                        "(-1 for unlabeled)") from None
    if len(classes) < 2:
        raise UserError(f"y: every labeled image is of class {classes[0]!r}; label images of at least two classes")
    return classes, codes.reshape(-1), labeled


def _rng_states(device: str) -> dict:
    """Python's, numpy's and torch's global RNG states (and CUDA's where fit uses it or it is in
    use), which the trainer reseeds."""
    from .engine.trainer import rng_state

    s = rng_state(torch.device("cpu"))
    if torch.cuda.is_available() and (torch.cuda.is_initialized() or device in ("auto", "cuda")):
        s["cuda_all"] = torch.cuda.get_rng_state_all()
    return s


def _restore_rng_states(s: dict) -> None:
    from .engine.trainer import set_rng_state

    set_rng_state(s, torch.device("cpu"))
    if "cuda_all" in s:
        torch.cuda.set_rng_state_all(s["cuda_all"])


class SemiSupervisedClassifier(ClassifierMixin, BaseEstimator):
    """A semi-supervised image classifier in scikit-learn's conventions: `fit(X, y)` with
    `y = -1` for the unlabeled images, then `predict`, `predict_proba`, `score`.

    X: uint8 images (0-255) or floats in [0, 1], shaped (N, H, W), (N, H, W, C) or (N, C, H, W)
    with C 1 or 3 (`as_images` says how an ambiguous shape is read). y: one label per image, of
    any sortable type; -1 marks an unlabeled image. Every labeled image is used, none is held out:
    the trainer's evaluations (`history_`, the run folder's `test_*` metrics) score the labeled
    training images, so they show how training went, not how well it generalises; the model kept
    is the final one (the EMA weights at the last step), never one chosen on them.

    Parameters: `method` (a classification method, `semisup methods` lists them), `steps`,
    `batch_size` (labeled images per step), `unlabeled_ratio` and `lr` (None: the method's
    defaults), `model` (None: the method's or the image size's default network), `device` (cpu,
    cuda or auto), `seed`, `out` (a folder: train into a run folder there, which `semisup
    predict` and `semisup eval OUT --data OTHER` open; None: nothing is written), `quiet` (no
    progress bar) and any other option of `semisup train` by its Python name (`threshold=0.9`,
    `ema=0.99`, `eval_every=100`, `include_labeled=False`, `overwrite=True` to train into an
    `out` that holds a run). `eval_every` defaults to `steps`: one evaluation, at the end, so a
    run folder's best.pt is the final model too. Everything is checked in `fit`, with the
    command line's messages (a `UserError`, one line).

    fit does not change the caller's global random state (Python's, numpy's, torch's): the
    trainer seeds them from `seed` and fit restores them after.

    Attributes after fit: `classes_`, `transduction_` (a label for every training image: its own
    where labeled, the prediction where not, as `sklearn.semi_supervised`), `network_` (the
    trained torch network, in eval mode), `history_` (the evaluation rows; `labeled_*` metrics
    are on the labeled training images), `config_` (the resolved options), `run_dir_` (the run
    folder, or None), `image_shape_` (C, H, W), `n_features_in_` (C * H * W). Images given to
    predict must have the fitted channels and size; resize them first (no resizing is done here,
    so no image is silently scaled).
    """

    def __init__(self, method="fixmatch", steps=1000, batch_size=32, unlabeled_ratio=None, lr=None, model=None,
                 device="cpu", seed=0, out=None, quiet=True, **method_options):
        self.method = method
        self.steps = steps
        self.batch_size = batch_size
        self.unlabeled_ratio = unlabeled_ratio
        self.lr = lr
        self.model = model
        self.device = device
        self.seed = seed
        self.out = out
        self.quiet = quiet
        self._options = method_options

    # ------------------------------------------------------------------ parameters
    def get_params(self, deep=True):
        """The named parameters and the other options given (scikit-learn leaves **kwargs out)."""
        return {**super().get_params(deep), **self._options}

    def set_params(self, **params):
        """Set named parameters and other options; all are checked in fit."""
        names = set(self._get_param_names())
        for k, v in params.items():
            if k in names:
                setattr(self, k, v)
            else:
                self._options[k] = v
        return self

    def _given(self) -> tuple[dict, bool]:
        """The options for `config.resolve`, and `overwrite`."""
        from .methods import METHODS

        options = dict(self._options)
        overwrite = options.pop("overwrite", False)
        for k in options:
            if k in NOT_PARAMETERS:
                raise UserError(f"{k}: not a parameter of SemiSupervisedClassifier; {NOT_PARAMETERS[k]}")
        other = [t for t, ms in METHODS.items() if t != "classify" and self.method in ms]
        if isinstance(self.method, str) and self.method not in METHODS["classify"] and other:
            raise UserError(f"method={self.method!r}: a {other[0]} method; SemiSupervisedClassifier trains "
                            f"classifiers: choose one of {', '.join(METHODS['classify'])}")
        given = {"task": "classify", "data": DATA_NAME, "method": self.method, "steps": self.steps,
                 "batch_size": self.batch_size, "device": self.device, "seed": self.seed, "quiet": self.quiet,
                 "labels": None, "labels_per_class": None, "labeled_fraction": None,
                 **{k: v for k, v in (("unlabeled_ratio", self.unlabeled_ratio), ("lr", self.lr),
                                      ("model", self.model)) if v is not None},
                 **options}
        given.setdefault("eval_every", self.steps)
        # numpy scalars (np.arange in a parameter grid) as the Python numbers the checks take
        return {k: v.item() if isinstance(v, np.generic) else v for k, v in given.items()}, bool(overwrite)

    # ------------------------------------------------------------------ fit
    def fit(self, X, y):
        """Train on images X and labels y (-1: unlabeled); returns self."""
        from .config import resolve
        from .data.types import Source, Split
        from .methods import get_method

        given, overwrite = self._given()
        cfg = resolve(given)
        x = as_images(X)
        if len(x) == 0:
            raise UserError("X: no images")
        classes, codes, labeled = _encode(y, len(x))
        if get_method(cfg["method"], "classify").unlabeled_views and labeled.all():
            raise UserError(f"y: no label is -1, and method '{cfg['method']}' learns from unlabeled images; mark "
                            "the unlabeled images -1, or use method='supervised'")
        targets = torch.full((len(x),), -1, dtype=torch.long)
        targets[torch.from_numpy(labeled)] = torch.from_numpy(codes.astype(np.int64))
        idx = torch.from_numpy(np.flatnonzero(labeled))
        # the evaluation split is the labeled images: nothing is held out of training (make_semidata
        # would hold out a share of them from a source without a test split)
        src = Source(DATA_NAME, "arrays", [str(c) for c in classes], Split(x, targets),
                     test=Split(x[idx], targets[idx]), flip=x.shape[1] == 3)
        saved = _rng_states(cfg["device"])
        try:
            if self.out is None:
                network, history, device, cfg = self._train_here(cfg, src)
                run_dir = None
            else:
                network, history, device, cfg, run_dir = self._train_into(given, src, overwrite)
        finally:
            _restore_rng_states(saved)
        self.network_, self._device = network.eval(), device
        self.config_, self.run_dir_ = cfg, run_dir
        self.history_ = [{k.replace("test_", "labeled_", 1): v for k, v in row.items()} for row in history]
        self.classes_ = classes
        self.image_shape_ = tuple(x.shape[1:])
        self.n_features_in_ = int(np.prod(self.image_shape_))
        pred = classes[self._logits(x).argmax(1).numpy()]
        self.transduction_ = np.where(labeled, np.asarray(y), pred)
        return self

    def _train_here(self, cfg: dict, src):
        """Train in memory (no run folder): the steps of `run.train` without its files."""
        from .engine.trainer import Trainer, TrainOptions
        from .run import prepare
        from .tasks import get_task

        auto = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(auto if cfg["device"] == "auto" else cfg["device"])
        data, views, method = prepare(cfg, src)
        opts = TrainOptions(**{f.name: cfg[f.name] for f in fields(TrainOptions)})
        trainer = Trainer(method, data, views, opts, None, device, task=get_task("classify"))
        trainer.fit({"method": cfg["method"]})
        return trainer.ema.module, trainer.history, device, cfg

    def _train_into(self, given: dict, src, overwrite: bool):
        """Train into the run folder `out` with `run.train`; the model is its last.pt (the final
        EMA weights, as in memory)."""
        from .engine.runfolder import RunFolder
        from .infer import load_run
        from .run import train

        summary, path = train(given, out=str(self.out), overwrite=overwrite, source=src)
        network, meta, _ = load_run(str(path), "last")
        device = torch.device(summary["device"])
        return network.to(device), RunFolder(path).metrics(), device, meta["config"], Path(path)

    # ------------------------------------------------------------------ predict
    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        from .tasks import predict_logits

        if len(x) == 0:
            return torch.zeros(0, len(self.classes_))
        return predict_logits(self.network_, x, self._device, self.config_["eval_batch"]).cpu()

    def _images(self, X) -> torch.Tensor:
        check_is_fitted(self)
        x = as_images(X)
        if tuple(x.shape[1:]) != self.image_shape_:
            c, h, w = self.image_shape_
            raise UserError(f"X: images of {tuple(x.shape[1:])} (channels, height, width); this classifier was "
                            f"fit on {(c, h, w)}; give {c}-channel {w}x{h} images")
        return x

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (N, len(classes_)), columns in `classes_` order."""
        return self._logits(self._images(X)).double().softmax(1).numpy()

    def predict(self, X) -> np.ndarray:
        """The most probable class of each image, from `classes_`."""
        best = self._logits(self._images(X)).argmax(1).numpy()
        return self.classes_[best]
