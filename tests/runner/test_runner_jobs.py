"""End to end with the new job fields: power, governor, capped threads, device; a real runner subprocess."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hwlab_runner import PROTOCOL_VERSION

RUNNERS = str(Path(__file__).resolve().parents[2] / "runners")
SHAPE = [1, 4, 16, 16]
MODEL = {"key": "conv", "path": "conv.onnx", "inputs": [{"shape": SHAPE, "dtype": "float32"}]}
FAST = {
    "warmup": {"min_count": 3, "min_time_s": 0.0},
    "stop": {"min_count": 10, "min_time_s": 0.05, "max_time_s": 0.3, "ci_rel": 0.05},
}
GOVERNOR = "sys/devices/system/cpu/cpu{}/cpufreq/scaling_governor"

pytestmark = pytest.mark.filterwarnings(
    "ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning"
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    import torch

    folder = tmp_path_factory.mktemp("jobs")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        conv = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.ReLU()).eval()
        torch.onnx.export(conv, (torch.randn(*SHAPE),), str(folder / "conv.onnx"), dynamo=False)
    return folder


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def fake_sysfs(root: Path, cpus: list[int]) -> Path:
    """A board with an INA226 power meter (2.5 W, µW) and cpufreq on schedutil for the CPUs we may use."""
    write(root, "sys/class/hwmon/hwmon0/name", "ina226\n")
    write(root, "sys/class/hwmon/hwmon0/power1_input", "2500000\n")
    for cpu in cpus:
        write(root, GOVERNOR.format(cpu), "schedutil\n")
        write(root, f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_cur_freq", "1416000\n")
    return root


def affinity() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def start(folder: Path, name: str, job: dict, sysfs: Path | None = None) -> subprocess.Popen:
    full = {"protocol": PROTOCOL_VERSION, "runtime": "onnxruntime", "models": [MODEL], **FAST, **job}
    (folder / name).write_text(json.dumps(full))
    env = dict(os.environ, PYTHONPATH=RUNNERS, PYTHONFAULTHANDLER="1")
    env.pop("HWLAB_RUNNER_SYSFS_ROOT", None)
    if sysfs is not None:
        env["HWLAB_RUNNER_SYSFS_ROOT"] = str(sysfs)
    argv = [sys.executable, "-m", "hwlab_runner", "run", name]
    return subprocess.Popen(argv, cwd=str(folder), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_job(folder: Path, name: str, job: dict, sysfs: Path | None = None) -> tuple[int, list[dict], str]:
    proc = start(folder, name, job, sysfs)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, [json.loads(line) for line in out.splitlines()], err


def test_power_auto_on_this_machine_gives_the_reason_and_no_numbers(folder):
    from hwlab_runner.power import candidates

    if candidates("/"):
        pytest.skip("this machine has power sensors: the no-sensor form cannot be asserted here")
    many = len(affinity()) + 3
    rc, lines, err = run_job(folder, "auto.json", {"power": "auto", "threads": many})
    assert rc == 0, err
    line = lines[0]
    assert line["status"] == "ok", line.get("error")
    assert line["power"] == {
        "sensor": None,
        "reason": "no power sensor found (looked for hwmon, ina3221, power_supply, powercap/rapl)",
    }
    assert (line["threads"], line["threads_requested"]) == (len(affinity()), many)
    assert f"threads capped from {many} to {len(affinity())}" in err
    assert (line["device"], line["timer"], line["providers"]) == ("cpu", "perf_counter_ns", ["CPUExecutionProvider"])
    assert "governor" not in line  # not requested: not touched, not reported


def test_power_and_governor_on_a_fake_sysfs(folder, tmp_path):
    cpus = affinity()
    sysfs = fake_sysfs(tmp_path, cpus)
    job = {"power": {"sensors": ["ina3221:VDD_IN", "hwmon:ina226:power1"], "sample_hz": 100, "idle_s": 0.1},
           "governor": "performance", "threads": 1}  # fmt: skip
    rc, lines, err = run_job(folder, "fake.json", job, sysfs)
    assert rc == 0, err
    line = lines[0]
    assert line["status"] == "ok", line.get("error")
    p = line["power"]
    assert (p["sensor"], p["kind"], p["idle_w"], p["power_w"], p["active_w"]) == (
        "hwmon:ina226:power1", "hwmon", 2.5, 2.5, 0.0,
    )  # fmt: skip
    assert p["samples"] >= 2 and p["sample_hz"] > 0 and p["read_errors"] == 0
    assert all(math.isfinite(p[k]) for k in ("sample_hz", "window_s", "energy_mj", "dynamic_energy_mj"))
    assert p["energy_mj"] == round(2.5 * line["summary"]["mean_us"] / 1000, 9)
    assert p["dynamic_energy_mj"] == 0.0
    everything = {str(c): "performance" for c in cpus}
    assert line["governor"] == {
        "requested": "performance",
        "applied": True,
        "previous": {str(c): "schedutil" for c in cpus},
        "current": everything,
    }
    assert line["governors"] == everything  # what was in force while measuring
    assert line["freq_khz_before"] == {str(c): 1416000 for c in cpus}
    assert all((sysfs / GOVERNOR.format(c)).read_text() == "schedutil\n" for c in cpus)  # restored


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix", reason="POSIX signals")
def test_a_runner_whose_results_nobody_reads_stops_itself(folder, tmp_path):
    """The host's end of the results pipe closes (the host died, its parent did not): the runner notices
    within its watchdog's interval, not at its next result line (this model would take 10 minutes)."""
    cpus = affinity()
    sysfs = fake_sysfs(tmp_path, cpus)
    forever = {"stop": {"min_count": 10, "max_time_s": 600.0, "ci_rel": None, "max_count": 10**9},
               "governor": "performance", "rounds": None}  # fmt: skip
    proc = start(folder, "forever.json", forever, sysfs)
    try:
        deadline = time.monotonic() + 60
        while (sysfs / GOVERNOR.format(cpus[0])).read_text() != "performance\n":
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
            time.sleep(0.02)
        proc.stdout.close()  # nobody reads the results any more
        proc.stdout = None
        _, err = proc.communicate(timeout=60)  # a bound for a runner that never notices (it would run 600 s)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "nobody reads the results any more" in err
    assert all((sysfs / GOVERNOR.format(c)).read_text() == "schedutil\n" for c in cpus)


def test_cuda_where_there_is_none_is_an_error_line(folder):
    rc, lines, err = run_job(folder, "cuda.json", {"device": "cuda", "models": [MODEL, {**MODEL, "key": "b"}]})
    assert rc == 0
    assert [line["status"] for line in lines] == ["error", "error"]
    assert lines[0]["device"] == "cuda"
    assert lines[0]["error"].startswith("DeviceUnavailable: onnxruntime ")
    assert "has no CUDAExecutionProvider" in lines[0]["error"] and "onnxruntime-gpu" in lines[0]["error"]
    assert "no model can run" in err


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix", reason="POSIX signals")
def test_sigterm_mid_job_restores_the_governor(folder, tmp_path):
    cpus = affinity()
    sysfs = fake_sysfs(tmp_path, cpus)
    long_run = {
        "stop": {"min_count": 10, "max_time_s": 60.0, "ci_rel": None, "max_count": 10**9},
        "governor": "performance",
    }
    proc = start(folder, "long.json", long_run, sysfs)
    try:
        deadline = time.monotonic() + 60
        first = sysfs / GOVERNOR.format(cpus[0])
        while first.read_text() != "performance\n":
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)  # mid-job: the model takes 60 s (no CI rule) and has not finished
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # where it hangs: faulthandler prints every thread's stack on SIGABRT
            proc.send_signal(signal.SIGABRT)
            _, err = proc.communicate(timeout=30)
            raise AssertionError(f"the runner ignored SIGTERM for 60 s:\n{err}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert out == ""  # the model never finished
    assert all((sysfs / GOVERNOR.format(c)).read_text() == "schedutil\n" for c in cpus)
