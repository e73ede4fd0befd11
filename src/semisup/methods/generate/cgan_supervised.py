from __future__ import annotations

from .cgan_pseudo import CGANHyper, CGANPseudo


class CGANSupervised(CGANPseudo):
    """The baseline of the generation benchmark: `cgan_pseudo`'s conditional GAN (projection
    discriminator with a classification head, the same networks, losses and optimiser) trained on
    the labeled images alone; the unlabeled pool is never read."""

    name = "cgan_supervised"
    paper = "Miyato & Koyama 2018, cGANs with projection discriminator (labeled images only)"
    Hyper = CGANHyper
    unlabeled_views = ()

    @classmethod
    def run_defaults_for(cls, given):  # as many real images a step as cgan_pseudo
        return {**super().run_defaults_for(given), "batch_size": 128, "unlabeled_ratio": 0}
