"""Errors a user can fix. Commands print them as one line (``error: ...``) without a traceback.

Every class names what went wrong and where (the option, file or line) in its message. They also
derive from the built-in type code would have raised before (``ValueError``, ``KeyError``), so
callers that catch those keep working.
"""
from __future__ import annotations


class VemoError(Exception):
    """Base of the errors a user can fix; ``exit_code`` is what a command exits with."""

    exit_code = 1

    def __str__(self) -> str:  # KeyError subclasses would otherwise quote the message
        return str(self.args[0]) if self.args else self.__class__.__name__


class ConfigError(VemoError, ValueError):
    """An option has a value vemo cannot use; the message names the option."""


class ModalityError(ConfigError):
    """An empty modality list, a modality listed twice, or a modality the store does not hold."""


class DataError(VemoError, ValueError):
    """Data files are missing, malformed, or disagree with each other; the message names the file."""


class ResumeError(VemoError, ValueError):
    """A checkpoint to resume from does not match the run being started; the message says what differs."""


class TrainingError(VemoError, FloatingPointError):
    """Training cannot go on (e.g. the loss became NaN); the message says what to try."""


class PredictError(VemoError, ValueError):
    """A checkpoint cannot predict on this input (e.g. its features were made another way); the
    message says which modality and setting differ."""


class MissingPackageError(VemoError, ImportError):
    """A Python package that a chosen extractor or runtime needs is not installed; the message names
    the package to install (and the option that avoids it, where there is one)."""


def first_line(exc: BaseException | str) -> str:
    """The first line of an exception's message (or of a text), or the exception's type name when
    it says nothing: how errors of other libraries are quoted inside vemo's one-line errors."""
    text = (exc if isinstance(exc, str) else str(exc)).strip()
    if text:
        return text.splitlines()[0]
    return "" if isinstance(exc, str) else type(exc).__name__
