"""Device leases: who measures a device, and until when.

A lease is a small record, ``<cache>/leases/<device>.json``: its owner (what is measuring), the host,
boot, pid and process start time of the holder, and an expiry. The holder renews it from a thread while
the work runs. It is free once it has expired, or at once when its holder was a process of this host
that is gone (the pid is dead, or now another process): a run that crashed or was killed never blocks
the next one, which is what stale lock files do. A lease of another host (a cache folder shared between
hosts) is free only when it has expired.

Taking, renewing and releasing read and rewrite the record under a brief ``flock`` of
``<device>.guard``, held only for that read and write, so two processes never both see a free lease.
``hwlab profile`` and ``hwlab farm run`` take the same leases: they never measure one device together.
Within one process a lease is held once: a farm night that profiles inside its own lease reuses it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from hwlab.cache import cache_dir
from hwlab.errors import DeviceBusy, InvalidRequest
from hwlab.names import name_problem

POLL_S = 0.2
DEFAULT_TTL_S = 60.0
_HELD: dict[str, Lease] = {}  # the leases this process holds, by device: a nested request reuses them
_HELD_LOCK = threading.Lock()


def lease_dir() -> Path:
    return cache_dir() / "leases"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks since boot), to tell a reused pid apart; None where unreadable."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int, start: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    now = _start_ticks(pid)
    return start is None or now is None or now == start


@dataclass(frozen=True)
class LeaseRecord:
    """A lease as written: who holds the device, and until when (seconds since the epoch)."""

    device: str
    owner: str
    host: str
    boot: str
    pid: int
    start: int | None
    acquired_at: float
    expires_at: float

    def free(self, now: float) -> bool:
        """Whether another process may take the device now."""
        if now >= self.expires_at:
            return True
        same_boot = self.host == socket.gethostname() and self.boot == _boot_id()
        return same_boot and not _alive(self.pid, self.start)

    def describe(self) -> str:
        left = max(0.0, self.expires_at - time.time())
        return f"pid {self.pid} on {self.host} ({self.owner}; lease expires in {left:.0f} s unless renewed)"


class Lease:
    """A lease this process holds; renewed by a thread until released. ``lost`` says whether another
    process took it meanwhile (this process stalled past the expiry)."""

    def __init__(self, device: str, owner: str, ttl_s: float) -> None:
        self.device = device
        self.owner = owner
        self.ttl_s = ttl_s
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def path(self) -> Path:
        return lease_dir() / f"{self.device}.json"

    def _record(self, acquired_at: float) -> LeaseRecord:
        pid = os.getpid()
        now = time.time()
        return LeaseRecord(self.device, self.owner, socket.gethostname(), _boot_id(), pid, _start_ticks(pid),
                           acquired_at, now + self.ttl_s)  # fmt: skip

    def _mine(self, record: LeaseRecord | None) -> bool:
        return record is not None and record.pid == os.getpid() and record.host == socket.gethostname()

    def try_take(self) -> LeaseRecord | None:
        """Take the lease if it is free; otherwise the holder's record."""
        with _guard(self.device):
            held = read_lease(self.device)
            if held is not None and not held.free(time.time()) and not self._mine(held):
                return held
            _write(self.path, self._record(time.time()))
            return None

    def renew(self) -> bool:
        """Push the expiry forward; False (and ``lost``) when the lease is no longer this process's."""
        with _guard(self.device):
            held = read_lease(self.device)
            if not self._mine(held):
                self.lost = True
                return False
            assert held is not None
            _write(self.path, self._record(held.acquired_at))
            return True

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with _guard(self.device):
            if self._mine(read_lease(self.device)):
                self.path.unlink(missing_ok=True)

    def start_renewing(self) -> None:
        def renew_until_released() -> None:
            while not self._stop.wait(self.ttl_s / 3):
                if not self.renew():
                    print(f"hwlab: lost the lease of device {self.device!r} to another process", file=sys.stderr)
                    return

        self._thread = threading.Thread(target=renew_until_released, name=f"lease-{self.device}", daemon=True)
        self._thread.start()


@contextlib.contextmanager
def _guard(device: str) -> Iterator[None]:
    folder = lease_dir()
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f"{device}.guard", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write(path: Path, record: LeaseRecord) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(record), sort_keys=True))
    os.replace(tmp, path)


def read_lease(device: str) -> LeaseRecord | None:
    """The device's lease record as written (held or expired), None when there is none or it is unreadable."""
    try:
        data = json.loads((lease_dir() / f"{device}.json").read_text())
        return LeaseRecord(**data)
    except (OSError, ValueError, TypeError):
        return None


@contextlib.contextmanager
def device_lease(
    device: str, wait_s: float = 0.0, *, owner: str | None = None, ttl_s: float = DEFAULT_TTL_S
) -> Iterator[Lease]:
    """Hold the device's lease (renewed every ``ttl_s / 3``); wait for it at most ``wait_s`` seconds, then
    refuse with :class:`DeviceBusy` naming the holder."""
    problem = name_problem(device)
    if problem:
        raise InvalidRequest(f"device {problem}", hint="use a device name from the inventory")
    if not ttl_s > 0:
        raise InvalidRequest(f"a lease's ttl must be > 0 seconds, not {ttl_s!r}", hint="give a positive ttl")
    with _HELD_LOCK:
        outer = _HELD.get(device)
    if outer is not None:  # this process holds it already (a farm night calls profile): the same lease
        yield outer
        return
    lease = Lease(device, owner or " ".join(sys.argv[:3]) or "hwlab", ttl_s)
    deadline = time.monotonic() + wait_s
    while (holder := lease.try_take()) is not None:
        if time.monotonic() >= deadline:
            raise DeviceBusy(
                f"device {device!r} is in use by {holder.describe()}",
                hint="wait for it to finish, or pass --lock-wait SECONDS to queue behind it",
            )
        time.sleep(POLL_S)
    lease.start_renewing()
    with _HELD_LOCK:
        _HELD[device] = lease
    try:
        yield lease
    finally:
        with _HELD_LOCK:
            _HELD.pop(device, None)
        lease.release()
