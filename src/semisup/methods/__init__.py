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

METHODS: dict[str, type[Method]] = {m.name: m for m in (
    Supervised, PseudoLabel, PiModel, MeanTeacher, VAT, MixMatch, UDA, ReMixMatch,
    FixMatch, FlexMatch, FreeMatch, SoftMatch, SGAN)}


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        raise UserError(f"--method {name}: unknown method; choose one of {', '.join(METHODS)} "
                        "(`semisup methods` lists them)")
    return METHODS[name]
