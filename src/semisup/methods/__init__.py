"""The method registry: one file per algorithm; adding one is adding a file and a line here."""
from __future__ import annotations

from ..errors import UserError
from .base import Batch, Method  # noqa: F401
from .fixmatch import FixMatch
from .flexmatch import FlexMatch
from .freematch import FreeMatch
from .mean_teacher import MeanTeacher
from .mixmatch import MixMatch
from .pi_model import PiModel
from .pseudo_label import PseudoLabel
from .remixmatch import ReMixMatch
from .sgan import SGAN
from .softmatch import SoftMatch
from .supervised import Supervised
from .uda import UDA
from .vat import VAT

from .generate import GENERATE
from .segment import SEGMENT

CLASSIFY = (Supervised, PseudoLabel, PiModel, MeanTeacher, VAT, MixMatch, UDA, ReMixMatch,
            FixMatch, FlexMatch, FreeMatch, SoftMatch, SGAN)
# task -> name -> method; the same name (supervised, fixmatch, ...) may exist in several tasks
METHODS: dict[str, dict[str, type[Method]]] = {
    "classify": {m.name: m for m in CLASSIFY},
    "segment": {m.name: m for m in SEGMENT},
    "generate": {m.name: m for m in GENERATE},
}
TASKS = tuple(METHODS)


def get_method(name: str, task: str = "classify") -> type[Method]:
    if task not in METHODS:
        raise UserError(f"--task {task}: unknown task; choose one of {', '.join(TASKS)}")
    if name not in METHODS[task]:
        raise UserError(f"--method {name}: unknown method for --task {task}; choose one of {', '.join(METHODS[task])} "
                        "(`semisup methods` lists them)")
    return METHODS[task][name]
