"""Class-conditional generation from few labels, learned with a classifier; one file each."""
from .cgan_pseudo import CGANPseudo
from .cgan_supervised import CGANSupervised
from .ssvae import SSVAE
from .triple_gan import TripleGAN

GENERATE = (SSVAE, CGANPseudo, TripleGAN, CGANSupervised)
