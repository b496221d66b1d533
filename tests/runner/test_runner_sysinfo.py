"""Device readers against a fake sysfs/procfs tree of an RK3399 board (4x A53 + 2x A72)."""

from __future__ import annotations

import os

import pytest
from hwlab_runner import sysinfo
from hwlab_runner.cooldown import cool_down

RK3399_CPUINFO = "".join(
    f"processor\t: {cpu}\nBogoMIPS\t: 48.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n"
    f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n"
    f"CPU part\t: {'0xd03' if cpu < 4 else '0xd08'}\nCPU revision\t: {'4' if cpu < 4 else '2'}\n\n"
    for cpu in range(6)
)

MEMINFO = "MemTotal:        3969748 kB\nMemFree:          123456 kB\nMemAvailable:    2949120 kB\n"


def write(root, relative: str, text: str) -> None:
    path = os.path.join(str(root), relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


@pytest.fixture
def rk3399(tmp_path):
    cpu = "sys/devices/system/cpu"
    for n in range(6):
        big = n >= 4
        write(tmp_path, f"{cpu}/cpu{n}/cpufreq/cpuinfo_max_freq", "1800000\n" if big else "1416000\n")
        write(tmp_path, f"{cpu}/cpu{n}/cpufreq/scaling_cur_freq", "408000\n" if big else "1008000\n")
        write(tmp_path, f"{cpu}/cpu{n}/cpufreq/scaling_governor", "performance\n" if big else "schedutil\n")
    write(tmp_path, f"{cpu}/online", "0-5\n")
    write(tmp_path, f"{cpu}/cpufreq/policy0/scaling_governor", "schedutil\n")  # not a cpuN folder
    write(tmp_path, "sys/class/thermal/thermal_zone0/type", "soc-thermal\n")
    write(tmp_path, "sys/class/thermal/thermal_zone0/temp", "41250\n")
    write(tmp_path, "sys/class/thermal/thermal_zone1/type", "gpu-thermal\n")
    write(tmp_path, "sys/class/thermal/thermal_zone1/temp", "39375\n")
    write(tmp_path, "proc/meminfo", MEMINFO)
    write(tmp_path, "proc/cpuinfo", RK3399_CPUINFO)
    write(tmp_path, "proc/loadavg", "0.52 0.31 0.20 1/180 4242\n")
    return str(tmp_path)


def test_frequencies_and_governors(rk3399):
    assert sysinfo.cpu_ids(rk3399) == [0, 1, 2, 3, 4, 5]
    assert sysinfo.online_cpus(rk3399) == [0, 1, 2, 3, 4, 5]
    assert sysinfo.max_freq_khz(rk3399) == {str(n): 1416000 if n < 4 else 1800000 for n in range(6)}
    assert sysinfo.cur_freq_khz(rk3399)["4"] == 408000
    assert sysinfo.governors(rk3399) == {str(n): "schedutil" if n < 4 else "performance" for n in range(6)}


def test_big_little_clusters(rk3399):
    assert sysinfo.clusters(sysinfo.max_freq_khz(rk3399)) == [
        {"max_khz": 1416000, "cpus": [0, 1, 2, 3]},
        {"max_khz": 1800000, "cpus": [4, 5]},
    ]


def test_thermal_memory_and_cpu_model(rk3399):
    assert sysinfo.thermal_zones(rk3399) == {"soc-thermal": 41.25, "gpu-thermal": 39.375}
    assert sysinfo.max_temp_c(rk3399) == 41.25
    assert sysinfo.memory_mib(rk3399) == {"total_mib": 3876, "available_mib": 2880}
    assert sysinfo.cpu_parts(rk3399) == {str(n): "Cortex-A53" if n < 4 else "Cortex-A72" for n in range(6)}
    assert sysinfo.cpu_model(rk3399) == "4x Cortex-A53 + 2x Cortex-A72"
    assert sysinfo.loadavg(rk3399) == [0.52, 0.31, 0.2]


def test_hardware_line_and_x86_model_name(tmp_path):
    write(tmp_path, "proc/cpuinfo", "Hardware\t: Rockchip RK3399\n\n" + RK3399_CPUINFO)
    assert sysinfo.cpu_model(str(tmp_path)) == "Rockchip RK3399 (4x Cortex-A53 + 2x Cortex-A72)"
    write(tmp_path, "proc/cpuinfo", "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n\n")
    assert sysinfo.cpu_model(str(tmp_path)) == "Intel(R) Xeon(R) CPU @ 2.20GHz"


def test_duplicate_zone_types_and_unreadable_zones(tmp_path):
    zones = [("cpu-thermal", "50000"), ("cpu-thermal", "52500"), ("battery", "oops")]
    for n, (kind, temp) in enumerate(zones):
        write(tmp_path, f"sys/class/thermal/thermal_zone{n}/type", kind)
        write(tmp_path, f"sys/class/thermal/thermal_zone{n}/temp", temp)
    assert sysinfo.thermal_zones(str(tmp_path)) == {
        "cpu-thermal@thermal_zone0": 50.0,
        "cpu-thermal@thermal_zone1": 52.5,
    }


def test_an_empty_tree_reads_as_unknown(tmp_path):
    root = str(tmp_path)
    assert sysinfo.cpu_ids(root) == []
    assert sysinfo.online_cpus(root) is None
    assert sysinfo.cur_freq_khz(root) == {} and sysinfo.governors(root) == {}
    assert sysinfo.clusters(sysinfo.max_freq_khz(root)) == []
    assert sysinfo.thermal_zones(root) == {} and sysinfo.max_temp_c(root) is None
    assert sysinfo.memory_mib(root) == {} and sysinfo.cpu_model(root) is None
    assert sysinfo.loadavg(root) is None


@pytest.mark.parametrize(("text", "cpus"), [("0-3,6,8-9\n", [0, 1, 2, 3, 6, 8, 9]), ("0\n", [0]), ("", [])])
def test_parse_cpu_list(text, cpus):
    assert sysinfo.parse_cpu_list(text) == cpus


class FakeTime:
    def __init__(self, on_sleep=None):
        self.now = 0.0
        self.sleeps = []
        self.on_sleep = on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep:
            self.on_sleep(len(self.sleeps))


def test_cooldown_waits_until_cool_then_pauses(rk3399):
    def cool_after_two(count):
        if count == 2:
            write(rk3399, "sys/class/thermal/thermal_zone0/temp", "38000\n")

    t = FakeTime(cool_after_two)
    waited = cool_down(40.0, 1.0, 60.0, root=rk3399, sleep=t.sleep, clock=t.clock)
    assert t.sleeps == [0.5, 0.5, 1.0]
    assert waited == 2.0


def test_cooldown_gives_up_after_timeout(rk3399):
    t = FakeTime()
    assert cool_down(30.0, 0.0, 2.0, root=rk3399, sleep=t.sleep, clock=t.clock) == 2.0
    assert t.sleeps == [0.5] * 4


def test_cooldown_without_sensors_or_limit_only_pauses(tmp_path):
    t = FakeTime()
    assert cool_down(30.0, 0.25, 60.0, root=str(tmp_path), sleep=t.sleep, clock=t.clock) == 0.25
    assert cool_down(None, 0.0, 60.0, root=str(tmp_path), sleep=t.sleep, clock=t.clock) == 0.0
    assert t.sleeps == [0.25]


def test_int8_features_from_x86_flags_and_arm_features(tmp_path, rk3399):
    assert sysinfo.int8_features(rk3399) == []  # Cortex-A53/A72: no dot product instructions
    write(tmp_path, "proc/cpuinfo", "processor\t: 0\nFeatures\t: fp asimd asimddp i8mm sve\n\n")
    assert sysinfo.int8_features(str(tmp_path)) == ["asimddp", "i8mm"]
    write(tmp_path, "proc/cpuinfo", "processor\t: 0\nflags\t\t: sse avx2 avx512f avx512_vnni amx_int8\n\n")
    assert sysinfo.int8_features(str(tmp_path)) == ["avx512_vnni", "amx_int8"]
    write(tmp_path, "proc/cpuinfo", "processor\t: 0\n\n")
    assert sysinfo.int8_features(str(tmp_path)) is None
