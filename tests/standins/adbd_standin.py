"""A stand-in for a phone's adbd: the real ADB wire protocol over TCP, run against this host.

Phones cannot run in a test, so this process plays one for the real ``adb``
client (``adb connect 127.0.0.1:PORT``). It speaks the transport protocol of
AOSP's ``adb/protocol.txt`` and the file sub-protocol of ``SYNC.TXT``, with
the constants of ``adb.h`` and ``file_sync_protocol.h``:

- messages: a 24-byte little-endian header (command, arg0, arg1, data_length,
  data_check = byte sum of the payload, magic = command ^ 0xffffffff), then
  the payload; CNXN(A_VERSION 0x01000001, max payload, banner), OPEN, OKAY,
  WRTE (one WRTE in flight per stream: the next waits for the peer's OKAY),
  CLSE. AUTH is not offered: the stand-in accepts the host like an adbd with
  authentication disabled (``--state unauthorized`` instead keeps asking for
  AUTH, as a phone whose RSA prompt nobody accepted; ``--state offline``
  never answers CNXN).
- ``shell:CMD``: the legacy shell service. ``/bin/sh -c CMD`` runs in the
  sandbox folder on a raw pseudo-terminal, as adbd does without shell_v2, so
  stdout and stderr arrive merged, no exit status is sent, and closing the
  stream hangs the terminal up (SIGHUP) as closing adbd's PTY does.
- ``sync:``: STAT (lstat: mode, size, mtime; zeros when missing), LIST (DENT
  entries, then a DONE of a whole DENT's size), SEND (``path,mode``, DATA
  chunks, DONE with the mtime; answered OKAY or FAIL; parents are created as
  with ``fixed_push_mkdir``), RECV (DATA chunks then DONE, or FAIL), QUIT.

The banner advertises only ``fixed_push_mkdir``: no shell_v2, stat_v2, ls_v2
or sendrecv_v2, so clients use the services above. "Device" paths are this
host's real absolute paths and commands run for real, with TMPDIR set to the
sandbox's ``tmp`` folder (adbd sets /data/local/tmp).

Run: ``python adbd_standin.py --root DIR [--port N] [--state STATE]``; the
port it listens on is printed on the first line of stdout. Tests drive it
through :class:`StandIn` (start, kill like an unplugged phone, restart on
the same port).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pty
import selectors
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import tty
from pathlib import Path


def _cmd(name: bytes) -> int:
    return int.from_bytes(name, "little")


A_CNXN, A_AUTH, A_OPEN, A_OKAY, A_WRTE, A_CLSE = map(_cmd, (b"CNXN", b"AUTH", b"OPEN", b"OKAY", b"WRTE", b"CLSE"))
A_VERSION = 0x01000001
MAX_PAYLOAD = 256 * 1024
SYNC_DATA_MAX = 64 * 1024
AUTH_TOKEN = 1
HEADER = struct.Struct("<6I")
BANNER = (
    b"device::ro.product.name=hwlab_standin;ro.product.model=StandIn;"
    b"ro.product.device=standin;features=fixed_push_mkdir"
)


class Closed(Exception):
    """The stream or the whole connection is gone."""


class Stream:
    """One side of an OPENed stream: flow-controlled writes, buffered reads."""

    def __init__(self, conn: Connection, local_id: int, remote_id: int) -> None:
        self.conn = conn
        self.local_id = local_id
        self.remote_id = remote_id
        self.closed = False
        self.on_close: list = []  # callbacks run when the peer closes
        self._cond = threading.Condition()
        self._ready = True  # an OPEN implies the opener is ready for one WRTE
        self._inbox = bytearray()

    def write(self, data: bytes) -> None:
        step = min(self.conn.max_payload, MAX_PAYLOAD)
        for start in range(0, len(data), step):
            with self._cond:
                self._cond.wait_for(lambda: self._ready or self.closed)
                if self.closed:
                    raise Closed
                self._ready = False
            self.conn.send(A_WRTE, self.local_id, self.remote_id, data[start : start + step])

    def read_exact(self, n: int) -> bytes:
        with self._cond:
            self._cond.wait_for(lambda: len(self._inbox) >= n or self.closed)
            if len(self._inbox) < n:
                raise Closed
            out = bytes(self._inbox[:n])
            del self._inbox[:n]
            return out

    def read_some(self) -> bytes:
        with self._cond:
            self._cond.wait_for(lambda: self._inbox or self.closed)
            if not self._inbox:
                raise Closed
            out = bytes(self._inbox)
            self._inbox.clear()
            return out

    def close(self) -> None:
        """Close from this side (the service ended)."""
        if self._mark_closed():
            self.conn.send(A_CLSE, self.local_id, self.remote_id)

    # Called by the connection's reader thread.
    def got_okay(self) -> None:
        with self._cond:
            self._ready = True
            self._cond.notify_all()

    def got_data(self, data: bytes) -> None:
        with self._cond:
            self._inbox += data
            self._cond.notify_all()

    def got_close(self) -> None:
        if self._mark_closed():
            for callback in self.on_close:
                callback()

    def _mark_closed(self) -> bool:
        with self._cond:
            was_open = not self.closed
            self.closed = True
            self._cond.notify_all()
        if was_open:
            self.conn.forget(self)
        return was_open


class Connection:
    """One host connection: the message loop and the streams multiplexed over it."""

    def __init__(self, sock: socket.socket, root: str, state: str) -> None:
        self.sock = sock
        self.root = root
        self.state = state
        self.max_payload = 4096  # until the host's CNXN says otherwise
        self._send_lock = threading.Lock()
        self._streams: dict[int, Stream] = {}
        self._next_id = 1
        self._lock = threading.Lock()

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        header = HEADER.pack(command, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF, command ^ 0xFFFFFFFF)
        try:
            with self._send_lock:
                self.sock.sendall(header + data)
        except OSError as err:
            raise Closed from err

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise Closed
            buf += chunk
        return bytes(buf)

    def serve(self) -> None:
        try:
            self._loop()
        except (Closed, OSError):
            pass
        finally:
            for stream in list(self._streams.values()):
                stream.got_close()
            with contextlib.suppress(OSError):
                self.sock.close()

    def _loop(self) -> None:
        connected = False
        while True:
            command, arg0, arg1, length, _check, magic = HEADER.unpack(self._recv_exact(HEADER.size))
            if magic != command ^ 0xFFFFFFFF:
                return  # a corrupt header MUST close the connection
            data = self._recv_exact(length) if length else b""
            if command == A_CNXN:
                self.max_payload = arg1
                if self.state == "device":
                    connected = True
                    self.send(A_CNXN, A_VERSION, MAX_PAYLOAD, BANNER)
                elif self.state == "unauthorized":
                    self.send(A_AUTH, AUTH_TOKEN, 0, os.urandom(20))
            elif command == A_AUTH and self.state == "unauthorized" and arg0 != 3:
                self.send(A_AUTH, AUTH_TOKEN, 0, os.urandom(20))  # signature refused: a new token
            elif not connected:
                continue  # nothing counts before CNXN
            elif command == A_OPEN:
                self._open(arg0, data.rstrip(b"\0").decode("utf-8", "replace"))
            elif (stream := self._streams.get(arg1)) is None:
                continue  # a message for a stream already closed is ignored
            elif command == A_OKAY:
                stream.got_okay()
            elif command == A_WRTE:
                stream.got_data(data)
                self.send(A_OKAY, stream.local_id, stream.remote_id)
            elif command == A_CLSE:
                stream.got_close()

    def _open(self, remote_id: int, service: str) -> None:
        if service.startswith("shell:"):
            target = run_shell
        elif service == "sync:":
            target = run_sync
        else:
            self.send(A_CLSE, 0, remote_id)  # a failed OPEN
            return
        with self._lock:
            stream = Stream(self, self._next_id, remote_id)
            self._next_id += 1
            self._streams[stream.local_id] = stream
        self.send(A_OKAY, stream.local_id, remote_id)
        threading.Thread(target=_service, args=(target, stream, service), daemon=True).start()

    def forget(self, stream: Stream) -> None:
        with self._lock:
            self._streams.pop(stream.local_id, None)


def _service(target, stream: Stream, service: str) -> None:  # type: ignore[no-untyped-def]
    try:
        target(stream, service)
    except Closed:
        pass
    finally:
        with contextlib.suppress(Closed):
            stream.close()


# --- shell: -------------------------------------------------------------------------------------


def run_shell(stream: Stream, service: str) -> None:
    """Run the command on a raw PTY; its output goes back as WRTEs until it exits."""
    command = service[len("shell:") :]
    env = {**os.environ, "TMPDIR": os.path.join(stream.conn.root, "tmp")}
    argv = ["/bin/sh", "-c", command] if command else ["/bin/sh", "-i"]
    pid, master = pty.fork()
    if pid == 0:  # the child: its own session with the PTY as controlling terminal
        try:
            # A shell on the device starts with default signal handling, whatever this process ignores
            # (Python ignores SIGPIPE; nohup ignores SIGHUP, which would keep a hung-up command alive).
            for sig in (signal.SIGHUP, signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(sig, signal.SIG_DFL)
            tty.setraw(0)
            os.chdir(stream.conn.root)
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)

    def hang_up() -> None:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGHUP)

    stream.on_close.append(hang_up)
    feeder = threading.Thread(target=_feed_stdin, args=(stream, master), daemon=True)
    feeder.start()
    try:
        while True:
            try:
                chunk = os.read(master, 64 * 1024)
            except OSError:  # EIO: every writer of the terminal has gone
                break
            if not chunk:
                break
            stream.write(chunk)
    finally:
        hang_up()
        os.close(master)
        os.waitpid(pid, 0)


def _feed_stdin(stream: Stream, master: int) -> None:
    with contextlib.suppress(Closed, OSError):
        while True:
            os.write(master, stream.read_some())


# --- sync: --------------------------------------------------------------------------------------

SYNC = struct.Struct("<4sI")


def run_sync(stream: Stream, _service: str) -> None:
    """Answer sync requests until QUIT or a failure (which ends the service, as in adbd)."""
    while True:
        ident, length = SYNC.unpack(stream.read_exact(SYNC.size))
        if length > 1024:
            return _fail(stream, "path too long")
        name = stream.read_exact(length).decode("utf-8", "surrogateescape")
        if ident == b"STAT":
            _stat(stream, name)
        elif ident == b"LIST":
            _list(stream, name)
        elif ident == b"SEND":
            if not _send(stream, name):
                return None
        elif ident == b"RECV":
            if not _recv(stream, name):
                return None
        elif ident == b"QUIT":
            return None
        else:
            return _fail(stream, f"unknown command {ident!r}")


def _fail(stream: Stream, reason: str) -> None:
    message = reason.encode()
    stream.write(SYNC.pack(b"FAIL", len(message)) + message)


def _stat_fields(path: str) -> tuple[int, int, int]:
    try:
        st = os.lstat(path)
    except OSError:
        return 0, 0, 0
    return st.st_mode & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF, int(st.st_mtime) & 0xFFFFFFFF


def _stat(stream: Stream, path: str) -> None:
    stream.write(struct.pack("<4s3I", b"STAT", *_stat_fields(path)))


def _list(stream: Stream, path: str) -> None:
    out = bytearray()
    with contextlib.suppress(OSError):
        for name in [".", "..", *os.listdir(path)]:
            encoded = name.encode("utf-8", "surrogateescape")
            out += struct.pack("<4s4I", b"DENT", *_stat_fields(os.path.join(path, name)), len(encoded))
            out += encoded
    out += struct.pack("<4s4I", b"DONE", 0, 0, 0, 0)
    stream.write(bytes(out))


def _parse_mode(text: str) -> int:
    """The mode after the last comma, read like C's strtoul(text, 0)."""
    if text.lower().startswith("0x"):
        return int(text, 16)
    return int(text, 8) if text.startswith("0") and len(text) > 1 else int(text or "0")


def _send(stream: Stream, spec: str) -> bool:
    path, comma, mode_text = spec.rpartition(",")
    if not comma:
        _fail(stream, "missing , in ID_SEND")
        return False
    mode = _parse_mode(mode_text) & 0o777
    mode |= ((mode >> 3) & 0o070) | ((mode >> 3) & 0o007)  # user bits copied to group and other
    error = None
    fd = -1
    try:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISREG(os.lstat(path).st_mode):
                os.unlink(path)
        os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    except OSError as err:
        error = f"couldn't create file: {err.strerror}"
    while True:
        ident, length = SYNC.unpack(stream.read_exact(SYNC.size))
        if ident == b"DATA":
            data = stream.read_exact(length)
            if error is None:
                try:
                    os.write(fd, data)
                except OSError as err:
                    error = f"write failed: {err.strerror}"
        elif ident == b"DONE":
            mtime = length
            break
        else:
            error = error or "invalid data message"
            break
    if fd >= 0:
        os.close(fd)
    if error is not None:
        with contextlib.suppress(OSError):
            os.unlink(path)
        _fail(stream, error)
        return False
    os.utime(path, (mtime, mtime))
    stream.write(SYNC.pack(b"OKAY", 0))
    return True


def _recv(stream: Stream, path: str) -> bool:
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed below, after the last chunk)
    except OSError as err:
        _fail(stream, f"open failed: {err.strerror}")
        return False
    with handle:
        while chunk := handle.read(SYNC_DATA_MAX):
            stream.write(SYNC.pack(b"DATA", len(chunk)) + chunk)
    stream.write(SYNC.pack(b"DONE", 0))
    return True


# --- server -------------------------------------------------------------------------------------


def serve(root: str, port: int, state: str) -> None:
    os.makedirs(os.path.join(root, "tmp"), exist_ok=True)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(8)
    print(listener.getsockname()[1], flush=True)
    while True:
        sock, _ = listener.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Connection(sock, root, state)
        threading.Thread(target=conn.serve, daemon=True).start()


class StandIn:
    """The stand-in as a subprocess, so a test can kill it like a phone that goes away."""

    def __init__(self, root: Path, state: str = "device", port: int = 0) -> None:
        self.root = root
        self.state = state
        self.port = port
        self.proc: subprocess.Popen[str] | None = None

    @property
    def serial(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> StandIn:
        """Start listening (on the same port again after a kill) and wait for the port line."""
        self.root.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, __file__, "--root", str(self.root), "--port", str(self.port)]
        self.proc = subprocess.Popen([*argv, "--state", self.state], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            ready = sel.select(timeout=timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line.strip().isdigit():
            self.kill()
            raise RuntimeError(f"the stand-in adbd did not start on port {self.port}")
        self.port = int(line)
        return self

    def kill(self) -> None:
        """Gone at once, like a phone unplugged: SIGKILL, no goodbye."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
            self.proc = None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="sandbox folder: the shell's working directory")
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: any free one)")
    parser.add_argument("--state", choices=("device", "offline", "unauthorized"), default="device")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(os.path.abspath(args.root), args.port, args.state)


if __name__ == "__main__":
    main()
