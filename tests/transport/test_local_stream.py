"""The one stream class, through the local transport: lines as they come, stderr whole, deadlines kill."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hwlab.errors import CommandTimeout
from hwlab.transport import LocalTransport


def test_lines_arrive_as_printed_and_the_result_follows(tmp_path: Path) -> None:
    gate = tmp_path / "go"
    script = f'echo one; while [ ! -e "{gate}" ]; do sleep 0.05; done; echo two; printf last; exit 3'
    stream = LocalTransport().stream(["sh", "-c", script], line_timeout=60)
    lines = iter(stream)
    assert next(lines) == "one"  # while the command still waits for the gate
    gate.touch()
    assert list(lines) == ["two", "last"]
    assert stream.result.rc == 3


def test_stderr_is_read_to_its_end_before_the_result_is_built() -> None:
    """stdout ends first, then a long stderr: the error's last line is in the result, every time."""
    script = 'echo done; exec 1>&-; i=0; while [ $i -lt 20000 ]; do echo "err $i" >&2; i=$((i+1)); done; exit 1'
    stream = LocalTransport().stream(["sh", "-c", script], line_timeout=60)
    assert list(stream) == ["done"]
    lines = stream.result.stderr.splitlines()
    assert (len(lines), lines[-1], stream.result.rc) == (20000, "err 19999", 1)


def test_a_silent_command_is_killed_with_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child"
    script = f"sleep 600.75 & echo $! > {pid_file}; wait"
    stream = LocalTransport().stream(["sh", "-c", script], line_timeout=0.5)
    with pytest.raises(CommandTimeout, match="printed nothing for 0.5 s and was killed"):
        list(stream)
    stat = Path(f"/proc/{int(pid_file.read_text())}/stat")

    def alive() -> bool:
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.monotonic() + 30  # SIGKILL lands when the child next runs: a bound for failure only
    while alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not alive()  # the whole process group went with it


def test_a_command_that_closes_its_output_but_keeps_running_is_killed() -> None:
    stream = LocalTransport().stream(["sh", "-c", "echo bye; exec >&- 2>&-; sleep 600.5"], line_timeout=0.5)
    lines = iter(stream)
    assert next(lines) == "bye"
    with pytest.raises(CommandTimeout, match="closed its output but did not exit within 0.5 s"):
        next(lines)


def test_a_missing_program_is_exit_127_like_a_remote_shell() -> None:
    done = LocalTransport().run(["/nonexistent/tool", "x"], timeout=10)
    assert (done.rc, done.stdout) == (127, "") and "not found" in done.stderr
