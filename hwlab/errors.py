"""Typed errors of hwlab, all in one place.

Every error says what happened and what to do about it: ``str(err)`` is the
message a user sees, ending with the fix when one is known. Code raises the most
specific class that fits, never ``HwlabError`` itself, so a caller can catch
"the device went away" apart from "the request was wrong".
"""

from __future__ import annotations


class HwlabError(Exception):
    """Base of every error hwlab raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message}\n  fix: {hint}" if hint else message)


class InvalidRequest(HwlabError):
    """What was asked for cannot be done as asked: a bad argument, or a request the device cannot honour."""


# --- devices and how they are reached ---------------------------------------------------------


class InventoryError(HwlabError):
    """A device inventory file is missing, unreadable or invalid."""

    def __init__(self, path: str, field: str | None, problem: str, fix: str) -> None:
        self.path = path
        self.field = field
        where = f"{path}: field '{field}'" if field else path
        super().__init__(f"{where}: {problem}", hint=fix)


class DeviceNotFoundError(HwlabError):
    """No inventory entry has the requested device name."""


class DeviceBusy(HwlabError):
    """Another hwlab process holds the device."""


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


class UnknownHostKey(TransportError):
    """The device offered a host key that known_hosts does not hold."""


class HostKeyChanged(TransportError):
    """The device's host key differs from the one known_hosts holds: possibly an attack."""


class HostKeyNotTrusted(TransportError):
    """`hwlab devices trust` refused a key: another fingerprint than expected, or one already known."""


class LinkLost(TransportError):
    """The SSH connection died while a command was running."""


class NotSsh(TransportError):
    """The port answers TCP but no SSH server speaks on it: reconnecting cannot help."""


class DeviceOffline(TransportError):
    """The device cannot be reached over adb now: not found, offline, unauthorized or gone."""

    def __init__(self, message: str, *, state: str, hint: str | None = None) -> None:
        self.state = state
        super().__init__(message, hint=hint)


# --- measuring ----------------------------------------------------------------------------------


class RunnerError(HwlabError):
    """The device-side runner broke the protocol or could not start."""


class BenchmarkParseError(RunnerError):
    """benchmark_model's output holds no usable regular-run statistics (it failed or crashed)."""


class InputDataError(InvalidRequest):
    """Input data for a model (``--inputs``) is missing, not an .npz, or does not fit the model's inputs."""


class BackendUnavailable(HwlabError):
    """A runtime (onnxruntime, LiteRT, torch) or exporter is not installed, or fails to import."""


class SpaceError(HwlabError):
    """An operator or architecture space was asked for with bad parameters."""


class ExportError(HwlabError):
    """A spec or module could not be exported to a model file."""


class PrecisionUnsupported(ExportError):
    """A precision that is unknown, or that no exporter or runtime here can produce or execute."""


class TableError(HwlabError):
    """A lookup table is missing, unreadable or inconsistent."""


class TableMismatch(TableError):
    """A table exists but was measured under other fixed conditions."""


class MissingKeyError(TableError, KeyError):
    """A lookup asked for an op key the table does not hold."""

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return HwlabError.__str__(self)


class CorruptTailWarning(UserWarning):
    """The last line of a table file was cut short (a kill mid-write)."""


# --- predicting -----------------------------------------------------------------------------------


class GraphError(HwlabError):
    """An ONNX graph cannot be split into kernels: unreadable, cyclic or without static shapes."""


class UnknownOpError(HwlabError):
    """The graph holds ops that no kernel category covers, so their latency cannot be predicted."""

    def __init__(self, unknown: dict[str, list[tuple[str, str]]]) -> None:
        self.nodes = {op: tuple(name for name, _ in found) for op, found in unknown.items()}
        parts = []
        for op, found in unknown.items():
            shown = ", ".join(f"'{name}'" + (f": {why}" if why else "") for name, why in found[:5])
            more = f" and {len(found) - 5} more" if len(found) > 5 else ""
            parts.append(f"{op} (node{'s' if len(found) > 1 else ''} {shown}{more})")
        super().__init__(
            "no kernel category covers ONNX op type(s): " + "; ".join(parts),
            hint="profile an operator space that covers these ops and fit predictors for them, or pass "
            "allow_unknown=True (CLI: --allow-unknown) for a lower-bound prediction that lists them as warnings",
        )


class UnknownKernelError(HwlabError):
    """A model holds a kernel type the predictor was not trained on."""


class PredictorError(HwlabError):
    """A predictor folder is missing, unreadable, from a newer hwlab, or asked for what it lacks."""


# --- searching ------------------------------------------------------------------------------------


class DataError(HwlabError):
    """Training data that cannot be read or used."""


class SearchError(HwlabError):
    """A search, its supernet checkpoint or an architecture file cannot be used as asked."""


class BudgetUnmet(SearchError):
    """No candidate meets the constraints; the message names the fastest one drawn."""


class ReparamError(HwlabError):
    """A block cannot be converted to its deploy form, or its deploy form does not compute what it did."""
