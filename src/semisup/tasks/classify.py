"""Classification: class folders, CSV, IDX, NPZ or the built-in digits; accuracy selects;
`predict` writes a class and a confidence per image."""
from __future__ import annotations

import torch.nn.functional as F

from ..errors import UserError
from .base import Task, predict_logits


class Classify(Task):
    name = "classify"
    noun = "classification"
    suggest_strategies = ("typiclust", "badge", "margin", "entropy", "disagreement", "kcenter", "random")  # the first: the default

    def views(self, data, cfg: dict):
        from ..data.views import view_maker_for

        return view_maker_for(data, flip=cfg.get("flip"))

    def default_model(self, shape: tuple[int, int, int]) -> str:
        from ..models import default_model

        return default_model(min(shape[1:]))

    def build_model(self, name: str, shape: tuple[int, int, int], num_classes: int):
        from ..models import build_model

        return build_model(name, shape, num_classes)

    def check(self, cfg: dict) -> None:
        if cfg.get("init") is not None:
            raise UserError("--init: only for --task segment; a classifier's starting weights are --pretrained")

    def setup_model(self, model, cfg: dict) -> None:
        """--pretrained: the backbone's weights and their input statistics (`models.weights`)."""
        if cfg.get("pretrained"):
            from ..models.weights import load_pretrained

            load_pretrained(model, str(cfg["pretrained"]))

    def evaluate(self, model, split, device, batch: int = 128, classes=None) -> dict:
        logits = predict_logits(model, split.x, device, batch)
        y = split.y.to(logits.device)
        known = y >= 0
        return {"accuracy": (logits.argmax(1) == y)[known].float().mean().item(),
                "loss": F.cross_entropy(logits[known], y[known]).item()}

    def summary_line(self, summary: dict) -> str:
        m = summary["metrics"]
        return f"test accuracy {m['test_accuracy']:.4f} (best {m['best_test_accuracy']:.4f} at step {m['best_step']})"

    def eval_line(self, r: dict) -> str:
        return f"{r['data']}: accuracy {r['accuracy']:.4f} on {r['images']} images ({r['checkpoint']})"

    def predict(self, run_dir: str, paths: list[str], loaded, out: str | None, notes: list[str]) -> dict:
        from .. import infer

        rows = infer.predict(run_dir, paths, loaded, out, notes=notes)
        if out:
            return {"rows": rows, "notes": notes, "message": f"wrote {len(rows)} rows to {out}", "table": None}
        return {"rows": rows, "notes": notes, "message": None,
                "table": [infer.PREDICT_HEADER, *infer.prediction_rows(rows)]}

