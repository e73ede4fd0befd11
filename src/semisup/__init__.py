"""semisup: semi-supervised image models from a few labeled images and many unlabeled ones."""

__version__ = "0.1.0"

from .errors import UserError  # noqa: E402,F401


def __getattr__(name):  # imported on first use, so that `import semisup` (the CLI) does not load sklearn and torch
    if name == "SemiSupervisedClassifier":
        from .estimator import SemiSupervisedClassifier
        return SemiSupervisedClassifier
    raise AttributeError(f"module 'semisup' has no attribute {name!r}")
