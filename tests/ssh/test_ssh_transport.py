"""The SSH transport against a real OpenSSH server on loopback."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sshd_server import descendants, keygen

from hwlab.cli import main
from hwlab.errors import CommandTimeout, HostKeyChanged, LinkLost, UnknownHostKey
from hwlab.transport import connect, ssh_target
from hwlab.transport.ssh import Liveness, SshTarget, SshTransport


def test_run_exit_codes_and_streams(sshd) -> None:  # type: ignore[no-untyped-def]
    ssh = connect(sshd.device())
    try:
        done = ssh.run(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=30)
        assert (done.rc, done.stdout, done.stderr) == (3, "out\n", "err\n")
        assert ssh.run(["printf", "%s", "a b", "$HOME"], timeout=30).stdout == "a b$HOME\n"
        env = ssh.run(["sh", "-c", 'echo "$HWLAB_X"'], timeout=30, env={"HWLAB_X": "x y;z"})
        assert env.stdout == "x y;z\n"
    finally:
        ssh.close()


def test_unknown_host_key_is_refused_with_its_fingerprint(sshd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    ssh = connect(sshd.device(known_hosts=empty))
    with pytest.raises(UnknownHostKey) as info:
        ssh.run(["true"], timeout=30)
    # The fingerprint OpenSSH itself prints for the server's key.
    expected = subprocess.run(["ssh-keygen", "-lf", str(sshd.host_pub)], capture_output=True, text=True).stdout
    assert expected.split()[1] in str(info.value)
    assert "hwlab devices trust board" in str(info.value)
    assert empty.read_text() == ""  # nothing was accepted silently


def test_changed_host_key_is_refused_loudly(sshd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    keygen(tmp_path / "other")
    key_type, key_b64 = (tmp_path / "other.pub").read_text().split()[:2]
    stale = tmp_path / "stale_known_hosts"
    stale.write_text(f"[127.0.0.1]:{sshd.port} {key_type} {key_b64}\n")
    ssh = connect(sshd.device(known_hosts=stale))
    with pytest.raises(HostKeyChanged, match="HAS CHANGED") as info:
        ssh.run(["true"], timeout=30)
    assert "ssh-keygen -R" in str(info.value)


def test_slow_command_is_killed_at_its_deadline(sshd) -> None:  # type: ignore[no-untyped-def]
    ssh = connect(sshd.device())
    marker = "31.4159"  # a sleep no one else runs
    try:
        with pytest.raises(CommandTimeout, match="deadline"):
            ssh.run(["sleep", marker], timeout=1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            alive = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True).returncode == 0
            if not alive:
                break
            time.sleep(0.1)
        assert not alive, "the remote command outlived its deadline"
        assert ssh.run(["echo", "still usable"], timeout=30).stdout == "still usable\n"
    finally:
        ssh.close()


def test_a_chatty_command_is_held_to_its_deadline_too(sshd) -> None:  # type: ignore[no-untyped-def]
    ssh = connect(sshd.device())
    try:
        with pytest.raises(CommandTimeout, match="ran past its 1 s deadline"):
            ssh.run(["sh", "-c", "while :; do echo tick; sleep 0.01; done"], timeout=1)
    finally:
        ssh.close()


def test_files_travel_over_sftp(sshd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ssh = connect(sshd.device())
    payload = os.urandom(300_000)
    local = tmp_path / "blob.bin"
    local.write_bytes(payload)
    remote_dir = str(sshd.dir / "files" / "deep")
    try:
        ssh.mkdir(remote_dir)
        ssh.push(str(local), f"{remote_dir}/blob.bin")
        assert ssh.listdir(remote_dir) == ["blob.bin"]  # no .part left behind
        ssh.pull(f"{remote_dir}/blob.bin", str(tmp_path / "back.bin"))
        assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).digest() == hashlib.sha256(payload).digest()
        assert ssh.listdir(str(sshd.dir / "missing")) == []
        assert ssh.expand("~/x") == os.path.join(os.path.expanduser("~"), "x")
    finally:
        ssh.close()


def test_reconnects_after_the_link_drops(sshd) -> None:  # type: ignore[no-untyped-def]
    ssh = connect(sshd.device())
    try:
        assert ssh.run(["echo", "1"], timeout=30).rc == 0
        sshd.kill()
        sshd.start()
        assert ssh.run(["echo", "2"], timeout=30).stdout == "2\n"
    finally:
        ssh.close()


def test_ssh_config_alias_and_proxy_jump(sshd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Host alias, HostName, Port, User, IdentityFile and ProxyJump come from an ssh config file."""
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host board-alias\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
        f"  IdentityFile {sshd.user_key}\n  ProxyJump {sshd.user}@127.0.0.1:{sshd.port}\n"
        f"Host 127.0.0.1\n  IdentityFile {sshd.user_key}\n"
    )
    target = SshTarget.resolve("board-alias", known_hosts=str(sshd.dir / "known_hosts"), ssh_config=str(config))
    assert (target.hostname, target.port, target.user) == ("127.0.0.1", sshd.port, sshd.user)
    assert target.proxy_jump == f"{sshd.user}@127.0.0.1:{sshd.port}"
    ssh = SshTransport(target, device="board")
    try:
        assert ssh.run(["echo", "via jump"], timeout=30).stdout == "via jump\n"
        assert ssh._jump is not None  # the connection really went through the jump host
    finally:
        ssh.close()


def test_inventory_values_win_over_ssh_config(sshd) -> None:  # type: ignore[no-untyped-def]
    target = ssh_target(sshd.device(port=sshd.port))
    assert target.port == sshd.port and target.key_files == (str(sshd.user_key),)


def test_devices_trust_adds_the_key_after_checking_its_fingerprint(sshd, tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("COLUMNS", "250")
    inventory = sshd.inventory(tmp_path / "inv")
    known = Path(sshd.device().known_hosts)
    known.write_text("")  # the board is new to us
    expected = subprocess.run(["ssh-keygen", "-lf", str(sshd.host_pub)], capture_output=True, text=True).stdout
    fingerprint = expected.split()[1]
    monkeypatch.setattr(sys, "stdin", open(os.devnull))  # noqa: SIM115 (no terminal to answer the question)
    assert main(["devices", "--inventory", str(inventory), "trust", "board"]) == 1
    err = capsys.readouterr().err
    assert "needs a terminal" in err and "--fingerprint" in err and known.read_text() == ""
    assert main(["devices", "trust", "board", "--inventory", str(inventory), "--fingerprint", "SHA256:wrong"]) == 1
    assert "refusing to trust it" in capsys.readouterr().err and known.read_text() == ""
    assert main(["devices", "trust", "board", "--inventory", str(inventory), "--fingerprint", fingerprint]) == 0
    assert fingerprint in capsys.readouterr().out
    assert known.read_text() == sshd.known_hosts_line()
    ssh = connect(sshd.device())
    try:
        assert ssh.run(["true"], timeout=30).rc == 0
    finally:
        ssh.close()


def test_a_silent_link_is_declared_dead_within_the_keepalive_bound(sshd) -> None:  # type: ignore[no-untyped-def]
    """A hung board (every server process stopped: TCP still up, nothing answers) is noticed by the probe."""
    ssh = SshTransport(ssh_target(sshd.device()), device="board", keepalive_s=1, dead_link_s=4)
    try:
        stream = ssh.stream(["sh", "-c", "echo started; sleep 600.5"], line_timeout=300)
        lines = iter(stream)
        assert next(lines) == "started"
        stopped = [sshd.proc.pid, *descendants(sshd.proc.pid)]
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        with pytest.raises(LinkLost):  # not CommandTimeout after the 300 s line timeout: the probe noticed
            next(lines)
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        for pid in stopped[1:]:  # this session's server side and its command: nothing hangs them up
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        ssh.close()


class SilentServer:
    """A paramiko transport whose reply to a global request comes only when the test says so."""

    def __init__(self) -> None:
        self.asked = 0
        self.asked_event = threading.Event()
        self.answer = threading.Event()

    def global_request(self, kind: str, wait: bool) -> None:
        assert (kind, wait) == ("keepalive@openssh.com", True)
        self.asked += 1
        self.asked_event.set()
        self.answer.wait()


def test_the_liveness_rule_with_a_simulated_clock() -> None:
    """Silent for ``every_s``: ask for a reply; no reply within ``dead_after_s`` of the last sign of life: dead."""
    now = [100.0]
    server = SilentServer()
    live = Liveness(server, every_s=15, dead_after_s=45, clock=lambda: now[0])  # type: ignore[arg-type]
    now[0] = 114.0
    assert not live.dead() and server.asked == 0  # silent for 14 s: nothing asked yet
    now[0] = 116.0
    assert not live.dead()  # silent for 16 s: a probe starts, on a thread of its own
    assert server.asked_event.wait(timeout=30) and server.asked == 1
    now[0] = 144.0
    assert not live.dead()  # 44 s since the last sign of life
    live.heard(140.0)  # output arrived at 140 s: the count starts again from there
    now[0] = 185.5
    assert live.dead()  # 45.5 s without a word or a reply
    server.answer.set()
    live._probe.join(timeout=5)  # type: ignore[union-attr]
    assert not live.dead() and live.last == 185.5  # the reply came: alive, and heard now


@pytest.mark.parametrize("command", [["doctor", "--device", "silent"], ["devices", "trust", "silent", "--yes"]])
def test_a_port_that_accepts_but_never_speaks_ssh_is_one_error_without_retries(
    tmp_path: Path, command: list[str]
) -> None:
    """Not an SSH server (it accepts, then says nothing): one typed line from the CLI, no retries, and none of
    the tracebacks paramiko logs for a failed handshake (run in a process of its own: pytest captures logs)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def hold() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "silent.yaml").write_text(
        f"name: silent\ntransport: ssh\nhost: 127.0.0.1\nport: {listener.getsockname()[1]}\n"
        f"known_hosts: {tmp_path / 'known_hosts'}\nconnect_timeout_s: 2\n"
    )
    env = {**os.environ, "HWLAB_CACHE": str(tmp_path / "cache"), "COLUMNS": "250"}
    try:
        argv = [sys.executable, "-m", "hwlab.cli", *command, "--inventory", str(inventory)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)
    finally:
        stop.set()
        holder.join(timeout=5)  # before the listener closes under its accept()
        for sock in [*accepted, listener]:
            sock.close()
    assert done.returncode == 1, done.stderr
    assert "accepted the connection but sent no SSH banner within 2 s" in done.stderr, done.stderr
    assert "fix:" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert len(accepted) == 1  # tried once: it will not become an SSH server
    assert not (tmp_path / "known_hosts").exists()
