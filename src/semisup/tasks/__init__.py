"""The tasks: classify, segment, generate (one object each; `base.Task` says what a task owns)."""
from __future__ import annotations

from ..errors import UserError
from .base import Task, predict_logits
from .classify import Classify
from .generate import Generate
from .segment import Segment

TASKS: dict[str, Task] = {t.name: t for t in (Classify(), Segment(), Generate())}
DEFAULT_TASK = "classify"


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise UserError(f"--task {name}: unknown task; choose one of {', '.join(TASKS)}")
    return TASKS[name]


__all__ = ["TASKS", "DEFAULT_TASK", "Task", "get_task", "predict_logits"]
