"""How good a class-conditional generator is, without downloaded networks: an evaluator
classifier trained once per data set on every training label (cached; never used in
training), and in its feature space
- conditional accuracy: the share of images drawn for class y that the evaluator labels y;
- local FID: the Frechet distance between generated and real test features, reported beside
  its floor, the distance between as many real training images and the test images.
Only where every training label is known (benchmarks); elsewhere the metrics are unavailable."""
from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import torch

from .data.split import make_semidata
from .data.views import to_unit, view_maker_for
from .engine.runfolder import atomic_write
from .engine.trainer import Trainer, TrainOptions
from .methods.supervised import Supervised
from .metrics import feature_stats, frechet_distance
from .models import build_model, default_model
from .models.norm import set_input_norm
from .tasks import get_task

EVAL_BATCH = 64


def eval_steps(n_train: int) -> int:
    """20 passes over the training images, at least 500 steps and at most 2,000 (MNIST: 2 passes,
    99.3%; digits: 500 steps)."""
    return min(2000, max(500, 20 * n_train // EVAL_BATCH))


def cache_dir() -> Path:
    return Path(os.environ.get("SEMISUP_CACHE") or Path.home() / ".cache" / "semisup")


def fingerprint(src) -> str:
    h = hashlib.sha1()
    # "pixels": the cached network takes [0, 1] images and holds its input statistics
    for part in ("pixels", str(src.shape), ",".join(src.classes), str(eval_steps(len(src.train.y))), str(EVAL_BATCH)):
        h.update(part.encode())
    h.update(src.train.x.numpy().tobytes())
    h.update(src.train.y.numpy().tobytes())
    return h.hexdigest()[:16]


class GenEvaluator:
    def __init__(self, run_data, device: torch.device, seed: int = 0):
        """`run_data`: the run's SemiData; its test split is the reference."""
        source = run_data.source
        self.available = bool((source.train.y >= 0).all())
        if not self.available:
            self.reason = "not every training label is known, so no evaluator can be trained"
            return
        self.device, self.k = device, len(source.classes)
        data = make_semidata(source, None, None, seed)  # every training label
        self.views = view_maker_for(data)
        name = default_model(min(source.shape[1:]))
        self.model = build_model(name, source.shape, self.k)
        path = cache_dir() / "evaluators" / f"{fingerprint(source)}-{name}.pt"
        if path.exists():
            self.model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["model"])
        else:
            self.model = self._train(data, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            state = {"model": self.model.state_dict()}  # its input statistics inside (InputNorm)
            atomic_write(path, lambda p: torch.save(state, p))
        self.model.to(device).eval()
        test = run_data.test
        self.accuracy = get_task("classify").evaluate(self.model, test, device)["accuracy"]
        self.n = len(test.x)
        self.real = feature_stats(self.features_of_uint8(test.x))
        train = data.labeled  # every training image (a held-out test share excluded)
        pick = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:self.n]]
        self.floor = frechet_distance(*feature_stats(self.features_of_uint8(source.train.x[pick])), *self.real)

    def _train(self, data, name: str):
        """Supervised training on every label (the project's trainer, weak views, SGD)."""
        torch.manual_seed(0)
        model = build_model(name, data.source.shape, self.k)
        set_input_norm(model, data.mean, data.std)
        steps = eval_steps(len(data.labeled))
        opts = TrainOptions(steps=steps, batch_size=EVAL_BATCH, unlabeled_ratio=0, quiet=True)
        t = Trainer(Supervised(model, self.k), data, self.views, opts, None, self.device, task=get_task("classify"))
        for _ in range(steps):
            t.train_step()
        return t.ema.module.cpu()

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluator features of [0, 1] images."""
        return torch.cat([self.model.features(x[i:i + 500].to(self.device)).float() for i in range(0, len(x), 500)])

    def features_of_uint8(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.features(to_unit(x[i:i + 500].to(self.device)))
                          for i in range(0, len(x), 500)])

    @torch.no_grad()
    def __call__(self, method) -> dict:
        """The metrics of `method.generate`: ceil(N/K) images per class (N test images), fixed noise."""
        if not self.available:
            return {}
        g = torch.Generator(device=self.device).manual_seed(0)
        per = math.ceil(self.n / self.k)
        y = torch.arange(self.k, device=self.device).repeat_interleave(per)
        z = torch.randn(len(y), method.z_dim, generator=g, device=self.device)
        made = method.generate(y, z)
        f = self.features(made)
        return {"conditional_accuracy": (self.model.head(f).argmax(1) == y).float().mean().item(),
                "local_fid": frechet_distance(*feature_stats(f), *self.real), "local_fid_floor": self.floor}
