"""Errors a user can cause.

Every exception here is a *user* error: the CLI prints ``error: <message>`` on one line and
exits with status 2; the UI shows the message as a notice.  Programmer errors are left to
raise as ordinary Python exceptions.  Messages are one line and say what to do.
"""

from __future__ import annotations


class EchomeasureError(Exception):
    """Base class of all user-facing errors (CLI exit status 2)."""

    exit_code = 2

    def __str__(self) -> str:  # one line, always
        return " ".join(super().__str__().split())


class InputNotFoundError(EchomeasureError):
    """A path given by the user does not exist or is not a regular file."""


class InvalidInputError(EchomeasureError):
    """The file is not a readable DICOM, video or image, or its content is inconsistent."""


class UnsupportedEncodingError(EchomeasureError):
    """The pixel data uses an encoding (transfer syntax, codec) that cannot be decoded here."""


class CalibrationError(EchomeasureError):
    """A physical value cannot be computed: no region, two regions, wrong units, ..."""


class DeidentificationError(EchomeasureError):
    """De-identification could not be completed or the gate refused the output."""


class WeightsError(EchomeasureError):
    """Model weights are missing, corrupt, or do not match the registry."""


class MeasurementError(EchomeasureError):
    """A measurement was asked for that does not apply to this clip (e.g. Doppler on 2D)."""


class StoreError(EchomeasureError):
    """The review store cannot do what was asked (unknown clip, bad URL, ...)."""


class TrainingError(EchomeasureError):
    """Training or fine-tuning cannot run (e.g. too few reviews)."""
