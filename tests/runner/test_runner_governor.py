"""Governor set and restored on a fake cpufreq tree; signals; threads capped by the affinity."""

from __future__ import annotations

import contextlib
import errno
import os
import signal

import pytest
from hwlab_runner import PROTOCOL_VERSION, run
from hwlab_runner import governor as governor_module
from hwlab_runner.governor import CpuGovernor, GovernorError, set_for_job
from hwlab_runner.job import parse_job
from hwlab_runner.signals import exit_on_signals, stop_if_signalled
from hwlab_runner.timing import StopRule, Warmup, measure

CPU = "sys/devices/system/cpu"
OFFERED = "conservative ondemand userspace powersave performance schedutil\n"


def write(root, relative: str, text: str) -> None:
    path = os.path.join(str(root), relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def read_bytes(root, cpu: int) -> bytes:
    with open(os.path.join(str(root), CPU, f"cpu{cpu}", "cpufreq", "scaling_governor"), "rb") as f:
        return f.read()


@pytest.fixture
def board(tmp_path):
    """Four little cores on schedutil, two big ones on ondemand, as sysfs shows them (newline-terminated)."""
    for cpu in range(6):
        write(tmp_path, f"{CPU}/cpu{cpu}/cpufreq/scaling_governor", "schedutil\n" if cpu < 4 else "ondemand\n")
        write(tmp_path, f"{CPU}/cpu{cpu}/cpufreq/scaling_available_governors", OFFERED)
    return str(tmp_path)


def snapshot(root) -> list[bytes]:
    return [read_bytes(root, cpu) for cpu in range(6)]


def test_apply_then_undo_restores_exactly(board):
    before = snapshot(board)
    gov = CpuGovernor(range(6), board)
    assert gov.available()
    assert gov.show() == {"0": "schedutil", "1": "schedutil", "2": "schedutil", "3": "schedutil",
                          "4": "ondemand", "5": "ondemand"}  # fmt: skip
    previous = gov.apply("performance")
    assert previous["0"] == "schedutil" and previous["5"] == "ondemand"
    assert snapshot(board) == [b"performance\n"] * 6
    assert gov.undo() == []
    assert snapshot(board) == before


def test_only_the_cpus_of_the_mask_change(board):
    gov = CpuGovernor([4, 5], board)
    result = set_for_job(gov, "performance")
    assert result == {
        "requested": "performance",
        "applied": True,
        "previous": {"4": "ondemand", "5": "ondemand"},
        "current": {"4": "performance", "5": "performance"},
    }
    assert snapshot(board)[:4] == [b"schedutil\n"] * 4
    gov.undo()
    assert snapshot(board)[4:] == [b"ondemand\n"] * 2


def test_already_set_means_nothing_written(board, monkeypatch):
    write(board, f"{CPU}/cpu0/cpufreq/scaling_governor", "performance\n")
    monkeypatch.setattr(governor_module, "_write", lambda path, text: pytest.fail("no write expected"))
    assert set_for_job(CpuGovernor([0], board), "performance")["applied"] is True


def test_read_only_sysfs_reports_why_and_leaves_nothing_changed(board, monkeypatch):
    """As root here a chmod would not stop a write, so the kernel's refusal is simulated on cpu2."""
    real = governor_module._write

    def refuse_cpu2(path, text):
        if "/cpu2/" in path:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        real(path, text)

    before = snapshot(board)
    monkeypatch.setattr(governor_module, "_write", refuse_cpu2)
    result = set_for_job(CpuGovernor(range(6), board), "performance")
    assert result["applied"] is False and result["requested"] == "performance"
    path = os.path.join(board, CPU, "cpu2", "cpufreq", "scaling_governor")
    assert result["reason"].startswith(f"permission denied writing {path}: run as root or set it by hand (")
    assert snapshot(board) == before  # cpu0 and cpu1 were written, then put back


def test_read_only_file_system(board, monkeypatch):
    def erofs(path, text):
        raise OSError(errno.EROFS, "Read-only file system", path)

    monkeypatch.setattr(governor_module, "_write", erofs)
    with pytest.raises(GovernorError, match="^read-only file system writing .*cpu0/cpufreq/scaling_governor"):
        CpuGovernor([0], board).apply()


def test_a_governor_the_kernel_does_not_offer(board):
    result = set_for_job(CpuGovernor([0], board), "turbo")
    assert result["applied"] is False
    assert result["reason"].startswith("cpu0 does not offer governor 'turbo' (offers: conservative")


def test_no_cpufreq(tmp_path):
    gov = CpuGovernor([0, 1], str(tmp_path))
    assert not gov.available() and gov.show() == {}
    reason = set_for_job(gov, "performance")["reason"]
    assert reason == "no cpufreq scaling_governor for CPUs [0, 1]: this device has no cpufreq driver"


def job_with(**fields):
    data = {
        "protocol": PROTOCOL_VERSION,
        "runtime": "onnxruntime",
        "models": [{"key": "m", "path": "m.onnx", "inputs": []}],
    }
    return parse_job({**data, **fields})


@pytest.mark.parametrize("escape", [RuntimeError, KeyboardInterrupt, SystemExit])
def test_run_job_restores_the_governor_on_any_way_out(board, monkeypatch, escape):
    """The governor is in force while measuring and back after an error, Ctrl-C or SIGTERM's SystemExit."""
    before = snapshot(board)
    monkeypatch.setattr(run, "apply_core_mask", lambda mask: [0, 1, 2, 3, 4, 5])
    seen = []

    def measure_then_fail(job, model, backend, line, setup=None):
        seen.append(snapshot(board))
        raise escape("stop here")

    def write_line(line):
        seen.append(line)

    monkeypatch.setattr(run, "measure_model", measure_then_fail)
    job = job_with(governor="performance")
    if escape is RuntimeError:  # an ordinary failure is an error line, and the job ends normally
        assert run.run_job(job, write_line, root=board) == 1
        assert seen[1]["governor"]["applied"] is True and seen[1]["error"] == "RuntimeError: stop here"
        assert seen[1]["governors"] == {str(c): "performance" for c in range(6)}
    else:
        with pytest.raises(escape):
            run.run_job(job, write_line, root=board)
    assert seen[0] == [b"performance\n"] * 6
    assert snapshot(board) == before


@pytest.fixture
def default_handlers():
    """SIGTERM and SIGHUP at their defaults (a CI shell may have set SIGHUP to ignored)."""
    saved = {s: signal.signal(s, signal.SIG_DFL) for s in (signal.SIGTERM, signal.SIGHUP)}
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


def test_sigterm_and_sighup_raise_system_exit_inside_only(default_handlers):
    with pytest.raises(SystemExit) as stopped, exit_on_signals():
        signal.raise_signal(signal.SIGTERM)
    assert stopped.value.code == 128 + signal.SIGTERM
    with pytest.raises(SystemExit) as stopped, exit_on_signals():
        signal.raise_signal(signal.SIGHUP)
    assert stopped.value.code == 128 + signal.SIGHUP
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL


def test_a_swallowed_system_exit_still_stops_the_measuring_loop(default_handlers, capfd):
    """A library that swallows the handler's SystemExit (an exception inside a finaliser is only printed)
    does not make the job run on: the next block's check raises it again."""
    calls = []

    def swallowing_call() -> None:
        calls.append(1)
        if len(calls) == 3:
            with contextlib.suppress(SystemExit):
                signal.raise_signal(signal.SIGTERM)

    stop = StopRule(min_count=10, min_time_s=0.0, max_time_s=600.0, ci_rel=None, max_count=1000)
    with pytest.raises(SystemExit) as stopped, exit_on_signals():
        measure(swallowing_call, Warmup(1, 0.0), stop, block_min_time_s=0.0)
    assert stopped.value.code == 128 + signal.SIGTERM
    assert len(calls) <= 4  # the block after the signal, not the 1000th
    assert "SIGTERM received: stopping" in capfd.readouterr().err
    stop_if_signalled()  # outside, the signal has been dealt with


def test_an_ignored_signal_stays_ignored():
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with exit_on_signals():
            signal.raise_signal(signal.SIGHUP)  # nohup: nothing happens
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


@pytest.mark.parametrize(
    ("threads", "affinity", "used"),
    [(4, [0, 1], 2), (2, [0, 1], 2), (1, [0, 1, 2, 3], 1), (8, None, 8), (3, [5], 1)],
)
def test_threads_are_capped_by_the_affinity(threads, affinity, used):
    assert run.capped_threads(threads, affinity) == used


def test_job_fields_and_their_defaults():
    job = job_with()
    assert (job.power, job.governor, job.device) == (None, None, "cpu")
    auto = job_with(power="auto", governor="performance", device="cuda")
    assert auto.power.sensors is None and auto.power.sample_hz == 50.0 and auto.power.idle_s == 1.0
    assert (auto.governor, auto.device) == ("performance", "cuda")
    named = job_with(power={"sensors": ["ina3221:VDD_IN", "battery"], "idle_s": 0})
    assert named.power.sensors == ("ina3221:VDD_IN", "battery") and named.power.idle_s == 0.0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"power": {"sensor": "auto"}}, "job field 'power.sensor': unknown key"),
        ({"power": {"sensors": []}}, "job field 'power.sensors': expected \"auto\" or a non-empty list"),
        ({"power": {"sample_hz": 0}}, "job field 'power.sample_hz': expected a number > 0.0"),
        ({"power": {"sample_hz": 5000}}, "job field 'power.sample_hz': expected at most 1000"),
        ({"power": "on"}, "job field 'power': expected null, \"auto\" or an object"),
        ({"governor": "performance; reboot"}, "job field 'governor': expected null or a governor name"),
        ({"device": "tpu"}, "job field 'device': expected one of cpu, cuda, got 'tpu'"),
        ({"device": "cuda", "runtime": "litert"}, "job field 'device': runtime litert runs on cpu only"),
    ],
)
def test_bad_new_fields_are_named(fields, message):
    from hwlab_runner.job import JobError

    with pytest.raises(JobError) as caught:
        job_with(**fields)
    assert str(caught.value).startswith(message)
