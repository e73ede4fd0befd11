"""Semi-supervised semantic segmentation methods, one file each."""
from .ae_pretrain import AEPretrain
from .cps import CPS
from .fixmatch import FixMatch
from .mean_teacher import MeanTeacher
from .supervised import Supervised
from .unimatch import UniMatch

SEGMENT = (Supervised, AEPretrain, MeanTeacher, FixMatch, UniMatch, CPS)
