"""AdbTransport against the real adb client and a stand-in adbd speaking the wire protocol."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from adbd_standin import StandIn

from hwlab.errors import CommandFailed, CommandTimeout, DeviceOffline, TransportError
from hwlab.transport.adb import AdbTransport


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``check`` until it holds; fail (never hang) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not reached within {timeout:g} s")
        time.sleep(0.05)


def processes_with(token: str) -> list[str]:
    """Command lines of the live processes (zombies aside) that contain ``token``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except (OSError, IndexError):
            continue
        if token in cmdline and state != "Z":
            found.append(cmdline)
    return found


def test_run_gives_stdout_stderr_and_the_exact_exit_code(phone: AdbTransport, standin: StandIn) -> None:
    done = phone.run(["echo", "hi"], timeout=30)
    assert (done.rc, done.stdout, done.stderr) == (0, "hi\n", "")
    assert phone.run(["sh", "-c", "exit 7"], timeout=30).rc == 7
    mixed = phone.run(["sh", "-c", "echo out; echo err >&2; printf tail; exit 3"], timeout=30)
    assert (mixed.rc, mixed.stdout, mixed.stderr) == (3, "out\ntail", "err\n")
    env = phone.run(["sh", "-c", 'printf %s "$X"'], timeout=30, env={"X": "a b; $(touch PWNED) `x`"})
    assert env.stdout == "a b; $(touch PWNED) `x`"
    with pytest.raises(CommandFailed) as failed:
        phone.run(["ls", "/no/such/folder"], timeout=30).check()
    assert failed.value.rc != 0 and "/no/such/folder" in failed.value.stderr
    assert list((standin.root / "tmp").iterdir()) == []  # the stderr files are cleaned up
    assert not (standin.root / "PWNED").exists()


def test_push_pull_listdir_mkdir(phone: AdbTransport, standin: StandIn, tmp_path: Path) -> None:
    blob = random.Random(0).randbytes(300_000)
    local = tmp_path / "blob.bin"
    local.write_bytes(blob)
    folder = str(standin.root / "a" / "b")
    assert phone.listdir(folder) == []
    phone.mkdir(folder)
    phone.mkdir(folder)  # mkdir -p: again is fine
    assert phone.listdir(str(standin.root / "a")) == ["b"]
    phone.push(str(local), f"{folder}/blob.bin")
    assert phone.listdir(folder) == ["blob.bin"]  # no .part left behind
    back = tmp_path / "back.bin"
    phone.pull(f"{folder}/blob.bin", str(back))
    assert back.read_bytes() == blob
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".part")) == []
    with pytest.raises(CommandFailed):
        phone.pull(f"{folder}/missing.bin", str(tmp_path / "missing.bin"))
    with pytest.raises(TransportError, match="not absolute"):
        phone.push(str(local), "relative/blob.bin")


def test_stream_yields_each_line_as_it_comes(phone: AdbTransport, standin: StandIn) -> None:
    gate = standin.root / "go"
    script = f'echo one; while [ ! -e "{gate}" ]; do sleep 0.05; done; echo two; echo err >&2; printf last; exit 5'
    stream = phone.stream(["sh", "-c", script], line_timeout=30)
    lines = iter(stream)
    assert next(lines) == "one"  # arrives while the command still waits for the gate
    gate.touch()
    assert list(lines) == ["two", "last"]
    assert (stream.result.rc, stream.result.stderr) == (5, "err\n")


def test_expand_uses_the_device_home_only_for_a_tilde(phone: AdbTransport) -> None:
    home = phone.run(["sh", "-c", 'printf %s "$HOME"'], timeout=30).stdout
    assert phone.expand("~/hwlab") == f"{home}/hwlab"
    assert phone.expand("/data/local/tmp/hwlab") == "/data/local/tmp/hwlab"


def test_a_wrong_serial_names_the_fix(adb_server: str, standin: StandIn) -> None:
    with pytest.raises(DeviceOffline) as err:
        AdbTransport("NOSUCHPHONE42", connect_timeout=10).run(["true"], timeout=10)
    assert err.value.state == "not found"
    assert "adb devices -l" in str(err.value) and "adb connect host:port" in str(err.value)
    with pytest.raises(DeviceOffline) as err:  # a network serial nobody answers on
        AdbTransport("127.0.0.1:1", connect_timeout=10).run(["true"], timeout=10)
    assert err.value.state == "not found"


def test_wait_for_device_is_bounded(phone: AdbTransport, adb_server: str) -> None:
    phone.wait_for_device(timeout=30)
    with pytest.raises(CommandTimeout, match="did not come online within 1 s"):
        AdbTransport("NOSUCHPHONE42").wait_for_device(timeout=1)


@pytest.mark.parametrize(("state", "fix"), [("unauthorized", "accept the RSA key prompt"), ("offline", "restart adbd")])
def test_offline_and_unauthorized_devices_are_typed(adb_server: str, tmp_path: Path, state: str, fix: str) -> None:
    phone = StandIn(tmp_path / "phone", state=state).start()
    try:
        with pytest.raises(DeviceOffline) as err:
            AdbTransport(phone.serial, connect_timeout=2).run(["true"], timeout=10)
        assert err.value.state == state and fix in str(err.value)
    finally:
        phone.stop()


def test_device_going_away_mid_stream_is_a_typed_error(phone: AdbTransport, standin: StandIn) -> None:
    stream = phone.stream(["sh", "-c", "echo one; echo two; sleep 600.25"], line_timeout=60)
    received = []
    with pytest.raises(DeviceOffline) as err:
        for line in stream:
            received.append(line)
            if len(received) == 2:
                standin.kill()
    assert received == ["one", "two"]
    assert err.value.state == "gone" and "went away" in str(err.value)
    with pytest.raises(TransportError):
        stream.result  # noqa: B018 (no result for a command that never finished)
    wait_until(lambda: processes_with("sleep 600.25") == [], "the dead phone's commands are hung up")
    standin.start()  # back on the same port: the same transport reconnects
    assert phone.run(["echo", "back"], timeout=30).stdout == "back\n"


def test_a_stopped_stream_stops_its_command_even_when_it_ignores_the_hang_up(phone: AdbTransport) -> None:
    """adbd hangs up a shell whose stream closed; a command that ignores SIGHUP (and outlives its shell) is
    still stopped: the stream knows its pid and sends SIGTERM on the device."""
    token = "ignores-hup-27.18"
    script = f"trap '' HUP; echo ready; while :; do sleep 0.1; done # {token}"
    stream = phone.stream(["sh", "-c", script], line_timeout=60)
    lines = iter(stream)  # held: an abandoned iterator stops its command
    assert next(lines) == "ready"
    assert processes_with(token)
    stream.kill()
    wait_until(lambda: processes_with(token) == [], "the command is stopped by its pid")


def test_a_slow_command_is_killed_at_its_deadline(phone: AdbTransport, standin: StandIn) -> None:
    token = "31.4159"
    with pytest.raises(CommandTimeout):
        phone.run(["sleep", token], timeout=1)
    assert [cmd for cmd in processes_with(token) if "adb" in cmd] == []  # the client is gone now
    wait_until(lambda: processes_with(f"sleep {token}") == [], "the device hangs the command up")
    assert list((standin.root / "tmp").iterdir()) == []  # the stderr file was unlinked at once


def test_odd_names_reach_the_device_literally(phone: AdbTransport, standin: StandIn, tmp_path: Path) -> None:
    workdir = standin.root / "x; touch PWNED"
    odd = "a b $(touch PWNED2) `touch PWNED3`.txt"
    local = tmp_path / "plain.txt"
    local.write_text("payload\n")
    phone.mkdir(str(workdir))
    phone.push(str(local), f"{workdir}/{odd}")
    assert phone.listdir(str(workdir)) == [odd]
    assert phone.run(["cat", f"{workdir}/{odd}"], timeout=30).check().stdout == "payload\n"
    assert (workdir / odd).read_text() == "payload\n"
    planted = [p for p in standin.root.rglob("*") if p.name in {"PWNED", "PWNED2", "PWNED3"}]
    assert planted == [] and not Path("PWNED").exists()


def test_a_serial_with_spaces_and_shell_syntax_stays_one_argument(
    adb_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    serial = f"phone one; touch {tmp_path}/PWNED $(touch {tmp_path}/PWNED2)"
    with pytest.raises(DeviceOffline) as err:
        AdbTransport(serial, connect_timeout=5).run(["true"], timeout=10)
    assert err.value.state == "not found" and serial in str(err.value)
    assert not list(tmp_path.glob("PWNED*"))
