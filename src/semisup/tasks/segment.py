"""Semantic segmentation: images with masks (folders, the CamVid layout, a dataset card, the
built-in shapes); mean IoU selects, on val where there is one; `predict` writes index masks."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import UserError
from .base import Task, predict_logits


class Segment(Task):
    name = "segment"
    noun = "segmentation"
    data_kind = "segment"
    primary = "miou"
    resizes_images = False  # --image-size is the training crop; images keep their size
    output = "masks"
    suggest_strategies = ("entropy", "margin")  # by the mean over an image's pixels; the first: the default
    # a network trained from scratch on few, large images (weight decay 1e-4 as SSL4MIS's U-Nets;
    # UniMatch's equal labeled and unlabeled batches; lr 0.05, not SSL4MIS's 0.01: U-Net on shapes,
    # 50 labels, 1,000 steps, test mean IoU 0.42 against 0.35); UniMatch's splits are disjoint
    defaults = dict(data="shapes", method="mean_teacher", batch_size=8, unlabeled_ratio=1, lr=0.05,
                    weight_decay=1e-4, eval_every=100, save_every=500, include_labeled=False)

    def views(self, data, cfg: dict):
        from ..data.segviews import seg_view_maker_for

        views = seg_view_maker_for(data, cfg.get("image_size"))
        if cfg.get("flip") is not None:
            views.flip = cfg["flip"]
        return views

    def default_model(self, shape: tuple[int, int, int]) -> str:
        return "unet"  # width 16 at every size: a CPU trains it; on a GPU ask for unet64 or deeplabv3plus

    def build_model(self, name: str, shape: tuple[int, int, int], num_classes: int):
        from ..models import build_seg_model

        return build_seg_model(name, shape, num_classes)

    def check(self, cfg: dict) -> None:
        """--init and --pretrained both fill the encoder: one of them. --add-labels is for classes."""
        if cfg.get("add_labels"):
            raise UserError("--add-labels: for classification runs (a label there is a class name); a segmentation "
                            "image is labeled by its mask: add the mask to the data's masks and train again")
        if cfg.get("pretrained") is not None and cfg.get("init") is not None:
            raise UserError("--init and --pretrained: both load the encoder; give one (--pretrained also takes a run "
                            "folder and, for --model unet:ENCODER, a timm tag)")

    def setup_model(self, model, cfg: dict) -> None:
        """--init FILE or --pretrained SPEC into the encoder (`models.weights`)."""
        if cfg.get("init"):
            from ..models import load_encoder

            load_encoder(model, cfg["init"])
        elif cfg.get("pretrained"):
            from ..models.weights import load_seg_pretrained

            load_seg_pretrained(model, str(cfg["pretrained"]))

    @torch.no_grad()
    def evaluate(self, model, split, device, batch: int = 128, classes=None) -> dict:
        """Whole images, one confusion matrix over the split: mean IoU (the ignore value excluded),
        per-class IoU, pixel accuracy, Dice for two classes, cross-entropy."""
        from ..data.views import to_unit
        from ..metrics import IGNORE, confusion, seg_scores

        model.eval()
        k = len(classes) if classes else None
        conf, loss, pixels = None, 0.0, 0
        batch = max(1, min(batch, 16))  # whole images: activations grow with the pixels
        for i in range(0, len(split.x), batch):
            xb = to_unit(split.x[i:i + batch].to(device, non_blocking=True))
            logits = model(xb.contiguous(memory_format=torch.channels_last)).float()
            k = k or logits.shape[1]
            t = split.masks[i:i + batch].to(device).long()
            c = confusion(logits.argmax(1), t, k)
            conf = c if conf is None else conf + c
            n = int((t != IGNORE).sum())
            if n:
                loss += F.cross_entropy(logits, t, ignore_index=IGNORE, reduction="sum").item()
                pixels += n
        out = seg_scores(conf, classes or [str(j) for j in range(k)])
        out["loss"] = loss / max(pixels, 1)
        return out

    def summary_metrics(self, final: dict, best: dict, has_val: bool) -> dict:
        """The test scores of the checkpoint selected on val where there is a val split (the usual
        protocol), else the final ones, and the final mean IoU beside."""
        rep = best if has_val else final
        return {"final_test_miou": final.get("test_miou"),
                **{k: rep[k] for k in ("test_miou", "test_pixel_accuracy", "test_dice", "test_iou") if k in rep}}

    def summary_line(self, summary: dict) -> str:
        m = summary["metrics"]
        sel = f"checkpoint selected on val at step {m['best_step']}" if m["selected_on"] == "val" else "final"
        dice = f", Dice {m['test_dice']:.4f}" if "test_dice" in m else ""
        return f"test mean IoU {m['test_miou']:.4f} ({sel}; pixel accuracy {m['test_pixel_accuracy']:.4f}{dice})"

    def eval_line(self, r: dict) -> str:
        per = ", ".join(f"{c} {v:.3f}" for c, v in r["iou"].items() if v is not None)
        return (f"{r['data']}: mean IoU {r['miou']:.4f}, pixel accuracy {r['pixel_accuracy']:.4f} on {r['images']} "
                f"images ({r['checkpoint']}); IoU per class: {per}")

    def artifacts(self, out: Path, data, n: int = 6) -> None:
        """examples.png: image, ground truth and prediction of the first test images."""
        from ..infer import load_run
        from ..report import save_seg_examples

        model, meta, _ = load_run(str(out))
        x, masks = data.test.x[:n], data.test.masks[:n]
        preds = predict_logits(model, x, torch.device("cpu"), batch=n).argmax(1)
        save_seg_examples(x.numpy(), masks.numpy(), preds.numpy(), meta["palette"], out / "examples.png")

    def predict(self, run_dir: str, paths: list[str], loaded, out: str | None, notes: list[str]) -> dict:
        from .. import infer

        r = infer.predict_masks(run_dir, paths, out, loaded)
        again = f", replacing {r['replaced']} from an earlier predict" if r["replaced"] else ""
        return {"rows": r["rows"], "notes": notes + r["notes"], "table": None,
                "message": f"wrote {r['written']} masks and overlays to {r['out']}{again} "
                           f"(list: {r['out'] / infer.MASKS_INDEX})"}
