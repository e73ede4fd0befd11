"""semisup: semi-supervised image models from a few labeled images and many unlabeled ones."""

__version__ = "0.1.0"

from .errors import UserError  # noqa: E402,F401
