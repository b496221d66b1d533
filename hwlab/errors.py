"""Typed errors of hwlab.

Every error says what happened and what to do about it: ``str(err)`` is the
message a user sees, ending with the fix when one is known.
"""

from __future__ import annotations


class HwlabError(Exception):
    """Base of every error hwlab raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message}\n  fix: {hint}" if hint else message)


class InventoryError(HwlabError):
    """A device inventory file is missing, unreadable or invalid."""

    def __init__(self, path: str, field: str | None, problem: str, fix: str) -> None:
        self.path = path
        self.field = field
        where = f"{path}: field '{field}'" if field else path
        super().__init__(f"{where}: {problem}", hint=fix)


class DeviceNotFoundError(HwlabError):
    """No inventory entry has the requested device name."""


class TransportError(HwlabError):
    """A command or file transfer to a device failed."""


class CommandTimeout(TransportError):
    """A command on a device ran past its deadline and was killed."""


class CommandFailed(TransportError):
    """A command on a device exited non-zero; keeps its output as evidence."""

    def __init__(self, argv: list[str], rc: int, stdout: str, stderr: str, *, hint: str | None = None) -> None:
        self.argv = argv
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        tail = (stderr or stdout).strip().splitlines()[-5:]
        detail = ("\n    " + "\n    ".join(tail)) if tail else ""
        super().__init__(f"command {argv[0]!r} exited with {rc}{detail}", hint=hint)


class RunnerError(HwlabError):
    """The device-side runner broke the protocol or could not start."""


class BackendUnavailable(HwlabError):
    """A runtime (onnxruntime, LiteRT, torch) or exporter is not installed."""


class SpaceError(HwlabError):
    """An operator or architecture space was asked for with bad parameters."""


class ExportError(HwlabError):
    """A spec or module could not be exported to a model file."""


class TableError(HwlabError):
    """A lookup table is missing, unreadable or inconsistent."""


class TableMismatch(TableError):
    """A table exists but was measured under other fixed conditions."""


class MissingKeyError(TableError, KeyError):
    """A lookup asked for an op key the table does not hold."""

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return HwlabError.__str__(self)
