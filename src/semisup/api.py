"""The library's entry points, one import for the CLI and for Python users, by job:
configuration (`config`: option layering and checks), training (`run`: train, resume),
inference (`infer`: load a run, eval, predict, sample), which images to label next (`suggest`),
reports (`report`) and label sweeps (`sweep`)."""
from __future__ import annotations

from .config import (DATA_DEFAULTS, RUN_KEYS, TASK_DEFAULTS, WHERE_NOT_WHAT, defaults, method_options,
                     resolve, task_of)
from .infer import (MASKS_HEADER, MASKS_INDEX, PREDICT_HEADER, checkpoint_note, eval_run, evaluated_weights,
                    image_files, load_run, predict, predict_any, predict_masks, prediction_rows, read_run, sample,
                    scored_split, split_identity, training_data)
from .report import run_report
from .run import meta_of, prepare, train
from .suggest import suggest
from .sweep import sweep

__all__ = ["DATA_DEFAULTS", "RUN_KEYS", "TASK_DEFAULTS", "WHERE_NOT_WHAT", "defaults", "method_options", "resolve",
           "task_of", "MASKS_HEADER", "MASKS_INDEX", "PREDICT_HEADER", "checkpoint_note", "eval_run",
           "evaluated_weights", "image_files", "load_run", "predict", "predict_any", "predict_masks",
           "prediction_rows", "read_run", "run_report", "sample", "scored_split", "split_identity", "suggest",
           "sweep", "training_data", "meta_of", "prepare", "train"]
