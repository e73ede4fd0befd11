"""What differs by task, in one object per task (DESIGN.md "tasks/"): how the data are read and
drawn, the views, the network, how a model is scored and what selects a checkpoint, the summary
line, the run's artifacts, and what `predict`/`sample` do. The trainer, the run and the
inference code call these and never test a task's name."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import UserError


@torch.no_grad()
def predict_logits(model, x_uint8: torch.Tensor, device, batch: int = 128) -> torch.Tensor:
    """The model's logits for uint8 images, in batches, on `device` (returned there). Float32, also
    in a run that trains in bf16: a measurement, and the one `semisup eval` and `predict` repeat."""
    from ..data.views import to_unit

    model.eval()
    out = []
    for i in range(0, len(x_uint8), batch):
        xb = to_unit(x_uint8[i:i + batch].to(device, non_blocking=True))
        out.append(model(xb).float())
    return torch.cat(out) if out else torch.zeros(0)


def label_files(spec) -> list[str]:
    """--add-labels as a list of files: 'a.csv,b.csv' (the command line, config.yaml) or a list (Python)."""
    return [f.strip() for f in (spec.split(",") if isinstance(spec, str) else spec) if f.strip()]


class Task:
    name = ""
    data_kind = "classify"  # the kind of data set it reads (`Source.task`)
    primary = "accuracy"  # the test metric that selects a checkpoint and leads the summary
    defaults: dict = {}  # run defaults above the common ones (config layering)
    resizes_images = True  # --image-size is the size the images are read at (else a training crop)
    output = "classes"  # what `predict` gives per image: "classes" or "masks"
    # the `semisup suggest` strategies for this task's runs (`suggest.STRATEGIES`), and why none where empty
    suggest_strategies: tuple[str, ...] = ()
    no_suggest = ""
    noun = ""  # the task in messages: "classification"

    # ------------------------------------------------------------------ data and model
    def read(self, spec: str, strict: bool, classes, image_size):
        from ..data.sources import load_source

        return load_source(spec, strict=strict, classes=classes, task=self.data_kind, asked=f"--task {self.name}",
                           image_size=image_size if self.resizes_images else None)

    def draw(self, src, cfg: dict):
        """The labeled draw from the seed, then the labels of --add-labels files (`data.labels.added_labels`)."""
        from ..data.split import add_labels, make_semidata

        data = make_semidata(src, cfg["labels"], cfg["labels_per_class"], cfg["seed"],
                             labeled_fraction=cfg["labeled_fraction"], include_labeled=cfg["include_labeled"])
        if cfg.get("add_labels"):
            from ..data.labels import added_labels

            files = label_files(cfg["add_labels"])
            index, targets, rounds = added_labels(files, data, str(cfg["data"]))
            data = add_labels(data, index, targets, rounds, files, cfg["include_labeled"])
        return data

    def views(self, data, cfg: dict):
        raise NotImplementedError

    def default_model(self, shape: tuple[int, int, int]) -> str:
        raise NotImplementedError

    def build_model(self, name: str, shape: tuple[int, int, int], num_classes: int):
        raise NotImplementedError

    def check(self, cfg: dict) -> None:
        """The rules on a resolved config that are the task's (before the per-option checks): each
        task refuses the other task's weights option (--init, --pretrained)."""

    def setup_model(self, model, cfg: dict) -> None:
        """Anything done to a freshly built network before training (loading --init)."""

    # ------------------------------------------------------------------ scoring
    def evaluate(self, model, split, device, batch: int = 128, classes=None) -> dict:
        raise NotImplementedError

    def evaluator(self, data, device, seed: int):
        """A callable method -> more metrics at each evaluation, or None (a generator's metrics)."""
        return None

    def summary_metrics(self, final: dict, best: dict, has_val: bool) -> dict:
        """What the run's summary reports beside the selected and the final primary metric."""
        return {}

    def summary_line(self, summary: dict) -> str:
        raise NotImplementedError

    def eval_line(self, r: dict) -> str:
        raise NotImplementedError

    # ------------------------------------------------------------------ artifacts, inference
    def artifacts(self, out: Path, data) -> None:
        """Files written into the run folder after training."""

    def after_eval(self, method, run_path: Path, step: int) -> None:
        """Files written at each evaluation: where the method has a generator (`Method.samples`),
        samples.png (the latest) and samples/stepNNNNNNN.png, one row of its images per class."""
        from ..report import save_grid

        made = method.samples()
        if made is not None:
            (run_path / "samples").mkdir(exist_ok=True)
            save_grid(made, run_path / "samples" / f"step{step:07d}.png")
            save_grid(made, run_path / "samples.png")

    def predict(self, run_dir: str, paths: list[str], loaded, out: str | None, notes: list[str]) -> dict:
        raise NotImplementedError

    def sample(self, run_dir: str, ckpt: dict, per_class: int, out: str | None, seed: int):
        raise UserError(f"{run_dir}: a {self.name} run; `semisup sample` needs a --task generate run")
