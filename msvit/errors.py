"""Typed errors shared by every part of msvit, and the one CLI wrapper that maps them to exit codes.

CLIs run through :func:`run_cli`: an expected failure (:class:`MsvitError`) prints its one-line
message and exits with its ``exit_code``; Ctrl-C exits 130 and SIGTERM 143, each with one line;
anything else is a bug: one line naming the file the full traceback was written to, exit 1
(``--debug`` or ``MSVIT_DEBUG=1`` also prints the traceback).
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable

#: exit codes every msvit CLI documents in its --help
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT, 128 + SIGTERM
#: an unexpected exception (a bug): the same status as Python's own uncaught-exception exit
EXIT_INTERNAL = 1


class MsvitError(Exception):
    """Base class: an expected failure with a message meant for the user."""

    exit_code = EXIT_USAGE


class UsageError(MsvitError):
    """A command-line argument or output path cannot be used (checked before any work starts)."""


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


class OutputExistsError(ExportError):
    """The artifact's final name is taken and replacing it was not asked for (``--overwrite``)."""


class TargetUnavailableError(MsvitError):
    """The target cannot be produced or run on this host (missing package, GPU, OS): raised by
    export, runtime and predict alike, so it is no :class:`ExportError`."""

    exit_code = EXIT_UNAVAILABLE


class EngineUnavailableError(MsvitError):
    """The distributed engine (Ray) is not installed, or its cluster cannot be reached."""

    exit_code = EXIT_UNAVAILABLE


class OutputWriteError(MsvitError):
    """An output could not be written (disk full, quota, I/O error) after the work started: what
    was already written is whole and kept (a rerun resumes where that is possible)."""

    exit_code = EXIT_FAILED


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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process was (see :func:`run_cli`). A KeyboardInterrupt, so
    every clean-up path written for Ctrl-C (temp dirs, atomic writes, publish rollback) runs."""


def debug_requested(args: Any = None) -> bool:
    """``--debug`` on the command line or ``MSVIT_DEBUG`` set (to anything but '', '0', 'false')."""
    env = os.environ.get("MSVIT_DEBUG", "").strip().lower()
    return bool(getattr(args, "debug", False)) or env not in ("", "0", "false", "no")


#: set when SIGTERM arrives while run_cli runs: an error that follows it (a clean-up that failed
#: because the same signal also stopped a helper process, e.g. Ray's) still exits as terminated
_SIGTERM_SEEN: list[bool] = []


def _on_sigterm(signum, frame):  # noqa: ARG001
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not break the clean-up
    _SIGTERM_SEEN.append(True)
    raise Terminated()


def write_traceback(prog: str) -> str:
    """Write the exception being handled, with its traceback, to a new file in the temp dir;
    return its path (or why it could not be written)."""
    import tempfile
    import time
    import traceback

    try:
        fd, path = tempfile.mkstemp(prefix=f"{prog}-traceback-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            f.write(f"{prog} {' '.join(sys.argv[1:])}\n\n")
            traceback.print_exc(file=f)
        return path
    except OSError as e:
        return f"(could not be written: {e})"


def _said(message: str | Callable[[], str]) -> str:
    return message() if callable(message) else message


def _display_safe() -> list[tuple[Any, str]]:
    """stdout/stderr print any file name: one that is not UTF-8 (its bytes held as surrogate
    escapes) is shown with backslash escapes instead of failing the print. Returns what to restore."""
    changed = []
    for stream in (sys.stdout, sys.stderr):
        errors = getattr(stream, "errors", None)
        if errors == "strict" and hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors="backslashreplace")
                changed.append((stream, errors))
            except (ValueError, OSError, TypeError):
                pass
    return changed


def run_cli(fn: Callable[[Any], int], args: Any, interrupted: str | Callable[[], str] = "interrupted",
            prog: str | None = None) -> int:
    """The one place where exceptions become exit codes (every msvit CLI's ``main`` calls it).

    ========================================  =====  ==============================================
    what happened                             exit   printed on stderr
    ========================================  =====  ==============================================
    ``fn`` returned ``n``                     n
    :class:`MsvitError` (bad input, ...)      its ``exit_code`` (2; 3 unavailable; 4 guard)  ``❌ message``
    Ctrl-C (KeyboardInterrupt)                130    ``interrupted``
    SIGTERM                                   143    ``interrupted`` + ``(SIGTERM)``
    any other exception (a bug)               1      one line + the traceback file's path
    ========================================  =====  ==============================================

    ``--debug`` (``args.debug``) or ``MSVIT_DEBUG=1`` also prints the full traceback.
    SIGTERM is handled like Ctrl-C while ``fn`` runs (clean-up runs, nothing half-published).
    ``interrupted`` may be a function: called then, it says what the run had finished.
    """
    import signal
    import traceback

    prog = prog or os.path.basename(sys.argv[0] or "msvit") or "msvit"
    if prog in ("__main__.py", "-c", ""):
        prog = "msvit"
    debug = debug_requested(args)
    streams = _display_safe()
    old = None
    try:
        old = signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not the main thread: leave signals alone
        old = None
    _SIGTERM_SEEN.clear()
    try:
        return fn(args)
    except MsvitError as e:
        if debug:
            traceback.print_exc()
        print(f"❌ {e}", file=sys.stderr)
        return e.exit_code
    except Terminated:
        print(f"{_said(interrupted)} (SIGTERM)", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print(_said(interrupted), file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # a bug: one line, the traceback in a file (or on stderr with --debug)
        if _SIGTERM_SEEN:  # the failure came from the stop itself (see _SIGTERM_SEEN)
            if debug:
                traceback.print_exc()
            print(f"{_said(interrupted)} (SIGTERM)", file=sys.stderr)
            return EXIT_TERMINATED
        where = write_traceback(prog)
        if debug:
            traceback.print_exc()
        first = (str(e).strip().splitlines() or [""])[0][:300]
        print(f"❌ internal error: {type(e).__name__}{': ' + first if first else ''} "
              f"(a bug in msvit; full traceback: {where}; --debug or MSVIT_DEBUG=1 prints it)", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        if old is not None:
            try:
                signal.signal(signal.SIGTERM, old)
            except (ValueError, OSError):
                pass
        for stream, errors in streams:
            try:
                stream.reconfigure(errors=errors)
            except (ValueError, OSError, TypeError):
                pass
