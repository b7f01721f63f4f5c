"""The one error family of dermoseg: every error meant for the user derives from :class:`DermosegError`.

The command line catches this one type and prints ``error: <message>`` (exit status 2) without a traceback;
each message names the file and the problem. The subclasses also derive from the built-in type they replace
(``ValueError``, ``RuntimeError``), so callers that caught those still do.
"""

from __future__ import annotations


class DermosegError(Exception):
    """Base of every user-facing dermoseg error; the message names the file (or setting) and the problem."""


class ConfigError(DermosegError, ValueError):
    """A configuration file is missing, not YAML, or has a key of the wrong kind; the message names it."""


class ImageReadError(DermosegError, ValueError):
    """A file could not be read as an image or mask; the message names the file and the reason."""


class UnsupportedImageError(ImageReadError):
    """The bytes are not in any image format dermoseg reads (e.g. a text or PDF file)."""


class ImageTooLargeError(ImageReadError):
    """The image has more pixels than the caller allows (checked from the header, before decoding)."""


class DatasetError(DermosegError, ValueError):
    """A dataset folder is not in the expected layout; the message names the file or folder."""


class SplitError(DermosegError, ValueError):
    """A split file is missing, malformed, or does not match the data; the message names the file."""


class ModelFileError(DermosegError, RuntimeError):
    """A model file is missing, unreadable or not a dermoseg model of the expected kind; the message names it."""


class PretrainedWeightsError(DermosegError, RuntimeError):
    """The offline ImageNet weights are missing or their checksum does not match."""


class EvaluationError(DermosegError, ValueError):
    """Predictions and truths cannot be paired or compared; the message names the file."""
