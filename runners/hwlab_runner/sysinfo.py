"""Readers of device state from sysfs and procfs.

Every reader takes ``root`` (default "/") so tests can point it at a fake tree
laid out as the kernel documents it. Anything unreadable gives an empty dict,
an empty list or None: device state is evidence recorded next to the numbers,
never a reason to fail a measurement.
"""

from __future__ import annotations

import glob
import os
import re
from typing import Callable, TypeVar

T = TypeVar("T")

CPU_DIR = "sys/devices/system/cpu"
THERMAL_DIR = "sys/class/thermal"
# For tests only: the run command reads sysfs (power sensors, cpufreq, thermal) under this folder.
ROOT_ENV = "HWLAB_RUNNER_SYSFS_ROOT"

# (implementer, part) from /proc/cpuinfo -> core name, for the common Arm designs.
ARM_PARTS = {
    ("0x41", "0xd03"): "Cortex-A53",
    ("0x41", "0xd04"): "Cortex-A35",
    ("0x41", "0xd05"): "Cortex-A55",
    ("0x41", "0xd07"): "Cortex-A57",
    ("0x41", "0xd08"): "Cortex-A72",
    ("0x41", "0xd09"): "Cortex-A73",
    ("0x41", "0xd0a"): "Cortex-A75",
    ("0x41", "0xd0b"): "Cortex-A76",
    ("0x41", "0xd0c"): "Neoverse-N1",
    ("0x41", "0xd0d"): "Cortex-A77",
    ("0x41", "0xd40"): "Neoverse-V1",
    ("0x41", "0xd41"): "Cortex-A78",
    ("0x41", "0xd44"): "Cortex-X1",
    ("0x41", "0xd46"): "Cortex-A510",
    ("0x41", "0xd47"): "Cortex-A710",
    ("0x41", "0xd48"): "Cortex-X2",
    ("0x41", "0xd49"): "Neoverse-N2",
    ("0x41", "0xd4d"): "Cortex-A715",
    ("0x41", "0xd4e"): "Cortex-X3",
    ("0x41", "0xd4f"): "Neoverse-V2",
    ("0x41", "0xd80"): "Cortex-A520",
    ("0x41", "0xd81"): "Cortex-A720",
    ("0x41", "0xd82"): "Cortex-X4",
}


def sysfs_root() -> str:
    """Where the run command reads sysfs: "/" unless the test-only variable ``HWLAB_RUNNER_SYSFS_ROOT`` says."""
    return os.environ.get(ROOT_ENV) or "/"


def _path(root: str, *parts: str) -> str:
    return os.path.join(root, *parts)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def _parse(path: str, convert: Callable[[str], T]) -> T | None:
    text = _read(path)
    if text is None:
        return None
    try:
        return convert(text)
    except ValueError:
        return None


def parse_cpu_list(text: str) -> list[int]:
    """Kernel CPU list syntax ("0-3,6,8-9") to sorted ids; ValueError when malformed."""
    cpus = set()
    for part in text.strip().split(","):
        if not part:
            continue
        if "-" in part:
            first, last = part.split("-", 1)
            cpus.update(range(int(first), int(last) + 1))
        else:
            cpus.add(int(part))
    return sorted(cpus)


def cpu_ids(root: str = "/") -> list[int]:
    """CPUs that sysfs lists (``cpuN`` folders), sorted."""
    ids = []
    for entry in glob.glob(_path(root, CPU_DIR, "cpu[0-9]*")):
        match = re.fullmatch(r"cpu(\d+)", os.path.basename(entry))
        if match:
            ids.append(int(match.group(1)))
    return sorted(ids)


def online_cpus(root: str = "/") -> list[int] | None:
    """CPUs the kernel has online (``/sys/devices/system/cpu/online``), None if unreadable."""
    return _parse(_path(root, CPU_DIR, "online"), parse_cpu_list)


def _per_cpu(root: str, name: str, convert: Callable[[str], T]) -> dict[str, T]:
    values = {}
    for cpu in cpu_ids(root):
        value = _parse(_path(root, CPU_DIR, f"cpu{cpu}", "cpufreq", name), convert)
        if value is not None:
            values[str(cpu)] = value
    return values


def cur_freq_khz(root: str = "/") -> dict[str, int]:
    """Current frequency per CPU in kHz (``scaling_cur_freq``), keyed by CPU id as a string."""
    return _per_cpu(root, "scaling_cur_freq", int)


def max_freq_khz(root: str = "/") -> dict[str, int]:
    """Hardware maximum frequency per CPU in kHz (``cpuinfo_max_freq``)."""
    return _per_cpu(root, "cpuinfo_max_freq", int)


def governors(root: str = "/") -> dict[str, str]:
    """cpufreq governor per CPU (``scaling_governor``)."""
    return _per_cpu(root, "scaling_governor", str)


def clusters(max_freq: dict[str, int]) -> list[dict[str, object]]:
    """Group CPUs by maximum frequency (big.LITTLE): ``[{"max_khz", "cpus"}]``, slowest first."""
    groups: dict[int, list[int]] = {}
    for cpu, khz in max_freq.items():
        groups.setdefault(khz, []).append(int(cpu))
    return [{"max_khz": khz, "cpus": sorted(groups[khz])} for khz in sorted(groups)]


def thermal_zones(root: str = "/") -> dict[str, float]:
    """Temperature of each thermal zone in °C, keyed by its ``type``.

    Zones sharing a type are keyed ``type@thermal_zoneN`` so none is lost.
    Zones whose temperature cannot be read (some sensors refuse while off) are left out.
    """
    readings = []
    zones = glob.glob(_path(root, THERMAL_DIR, "thermal_zone[0-9]*"))
    for zone in sorted(zones, key=lambda z: int(re.sub(r"\D", "", os.path.basename(z)) or 0)):
        millideg = _parse(os.path.join(zone, "temp"), int)
        if millideg is None:
            continue
        kind = _read(os.path.join(zone, "type")) or os.path.basename(zone)
        readings.append((kind, os.path.basename(zone), millideg / 1000.0))
    kinds = [kind for kind, _, _ in readings]
    return {(kind if kinds.count(kind) == 1 else f"{kind}@{name}"): c for kind, name, c in readings}


def max_temp_c(root: str = "/") -> float | None:
    """Hottest thermal zone in °C, None when no zone is readable."""
    zones = thermal_zones(root)
    return max(zones.values()) if zones else None


def memory_mib(root: str = "/") -> dict[str, int]:
    """``{"total_mib", "available_mib"}`` from /proc/meminfo (either may be missing)."""
    text = _read(_path(root, "proc", "meminfo"))
    if text is None:
        return {}
    out = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        field = {"MemTotal": "total_mib", "MemAvailable": "available_mib"}.get(name.strip())
        words = rest.split()
        if field and words and words[0].isdigit():
            out[field] = int(words[0]) // 1024  # meminfo counts kB
    return out


def _cpuinfo_blocks(root: str) -> list[dict[str, str]]:
    text = _read(_path(root, "proc", "cpuinfo"))
    if text is None:
        return []
    blocks: list[dict[str, str]] = [{}]
    for line in text.splitlines():
        if not line.strip():
            blocks.append({})
            continue
        name, sep, value = line.partition(":")
        if sep:
            blocks[-1][name.strip()] = value.strip()
    return [b for b in blocks if b]


def cpu_parts(root: str = "/") -> dict[str, str]:
    """Core design per CPU from /proc/cpuinfo on Arm ("Cortex-A53", or "0x41:0xd99" when unknown)."""
    parts = {}
    for block in _cpuinfo_blocks(root):
        if "processor" in block and "CPU part" in block:
            key = (block.get("CPU implementer", "").lower(), block["CPU part"].lower())
            parts[block["processor"]] = ARM_PARTS.get(key, ":".join(key))
    return parts


def cpu_model(root: str = "/") -> str | None:
    """A readable CPU name.

    x86 gives "model name". Arm kernels often have neither that nor "Hardware",
    so the core designs are counted instead: "Rockchip RK3399 (4x Cortex-A53 + 2x Cortex-A72)".
    """
    blocks = _cpuinfo_blocks(root)
    for block in blocks:
        for name in ("model name", "Model Name"):
            if block.get(name):
                return block[name]
    hardware = next((b["Hardware"] for b in blocks if b.get("Hardware")), None)
    parts = cpu_parts(root)
    counts: dict[str, int] = {}
    for cpu in sorted(parts, key=int):
        counts[parts[cpu]] = counts.get(parts[cpu], 0) + 1
    cores = " + ".join(f"{n}x {name}" for name, n in counts.items())
    if hardware and cores:
        return f"{hardware} ({cores})"
    return hardware or cores or None


# CPU features that speed up int8 dot products: x86 VNNI (AVX-512 or AVX) and AMX tiles, Arm's dot
# product (asimddp) and int8 matrix multiply (i8mm). Without them int8 still runs (AVX2's pmaddubsw,
# Arm's plain NEON), often no faster than fp32: measure it.
INT8_FEATURES = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def int8_features(root: str = "/") -> list[str] | None:
    """The INT8_FEATURES the first CPU lists (x86 ``flags``, Arm ``Features``); None when unreadable."""
    for block in _cpuinfo_blocks(root):
        listed = block.get("flags", block.get("Features"))
        if listed is not None:
            words = set(listed.split())
            return [f for f in INT8_FEATURES if f in words]
    return None


def loadavg(root: str = "/") -> list[float] | None:
    """1, 5 and 15 minute load averages from /proc/loadavg."""
    return _parse(_path(root, "proc", "loadavg"), lambda t: [float(x) for x in t.split()[:3]])
