"""Typed errors shared by every part of msvit.

CLIs catch :class:`MsvitError` and print its one-line message instead of a
traceback; anything else is a bug and is allowed to surface.
"""
from __future__ import annotations


class MsvitError(Exception):
    """Base class: an expected failure with a message meant for the user."""

    exit_code = 2


class CheckpointError(MsvitError):
    """A weights file cannot be used: unreadable, not a state dict, wrong variant, key mismatch."""


class CorruptCheckpointError(CheckpointError):
    """The file is not a readable checkpoint (truncated, wrong format, garbage)."""


class NotAStateDictError(CheckpointError):
    """The file loads but holds no tensor state dict (e.g. a pickled module or a list)."""


class VariantMismatchError(CheckpointError):
    """The checkpoint belongs to another MS-Eff-ViT variant (e.g. b5 weights for b0)."""


class KeyMismatchError(CheckpointError):
    """Missing or unexpected parameter names, or shapes that do not line up."""


class WeightsDownloadError(MsvitError):
    """Published weights could not be fetched or failed the integrity check."""


class DataError(MsvitError):
    """Input images / folders / manifests are unusable."""


class ArtifactError(MsvitError):
    """An artifact file cannot be opened: missing, truncated, corrupt or of an unknown format."""


class ExportError(MsvitError):
    """An export target failed."""


class TargetUnavailableError(ExportError):
    """The target cannot be produced or run on this host (missing package, GPU, OS)."""

    exit_code = 3


class ValidationError(ExportError):
    """An artifact's outputs do not match the PyTorch reference."""


class ShapeMismatchError(ValidationError):
    """Artifact output shape differs from the reference output shape."""


class ToleranceError(ValidationError):
    """Artifact outputs differ from the reference beyond atol/rtol."""


class CalibrationError(MsvitError):
    """INT8 calibration data is missing or unusable."""


class AccuracyGuardError(MsvitError):
    """A quantized artifact could not meet the accuracy budget."""

    exit_code = 4


def run_cli(fn, args, interrupted: str = "interrupted") -> int:
    """CLI entry wrapper: an expected failure prints one line and its exit code, never a traceback."""
    import sys

    try:
        return fn(args)
    except MsvitError as e:
        print(f"❌ {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
