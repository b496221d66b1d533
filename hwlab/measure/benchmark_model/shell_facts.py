"""What a device without Python is, read with the shell tools every Android (and Linux) has.

The runner's ``facts`` needs Python; this asks ``sh`` for the few facts a
benchmark_model table needs (architecture, model, CPUs and their clusters,
thermal zones) and whether the binary is there; ``getprop`` answers on Android only. The script is a constant:
nothing from the inventory is pasted into it; paths travel as arguments.
"""

from __future__ import annotations

from typing import Any

from hwlab.transport.base import Transport

SCRIPT = r"""
echo "machine $(uname -m)"
echo "model $(getprop ro.product.model 2>/dev/null)"
echo "android $(getprop ro.build.version.release 2>/dev/null)"
echo "online $(cat /sys/devices/system/cpu/online 2>/dev/null)"
for c in /sys/devices/system/cpu/cpu[0-9]*; do
  echo "maxfreq ${c##*cpu} $(cat "$c/cpufreq/cpuinfo_max_freq" 2>/dev/null)"
  echo "governor ${c##*cpu} $(cat "$c/cpufreq/scaling_governor" 2>/dev/null)"
done
for z in /sys/class/thermal/thermal_zone*; do
  echo "thermal $(cat "$z/type" 2>/dev/null) $(cat "$z/temp" 2>/dev/null)"
done
if [ -x "$1" ]; then echo "binary yes"; else echo "binary no"; fi
"""


def _cpu_list(text: str) -> list[int]:
    """'0-3,6' -> [0, 1, 2, 3, 6]."""
    cpus: list[int] = []
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def shell_facts(transport: Transport, binary: str) -> dict[str, Any]:
    """Facts in the runner's ``facts`` shape (the keys it can fill), with litert = benchmark_model."""
    done = transport.run(["sh", "-c", SCRIPT, "hwlab-facts", binary], timeout=60).check()
    facts: dict[str, Any] = {"python": None, "governors": {}, "thermal_c": {}, "max_freq_khz": {}}
    has_binary = False
    for line in done.stdout.splitlines():
        kind, _, rest = line.partition(" ")
        words = rest.split()
        if kind in ("machine", "model", "android"):
            facts[{"model": "cpu_model", "android": "os"}.get(kind, kind)] = rest.strip() or None
        elif kind == "online" and words:
            facts["online_cpus"] = _cpu_list(words[0])
        elif kind == "maxfreq" and len(words) == 2 and words[1].isdigit():
            facts["max_freq_khz"][words[0]] = int(words[1])
        elif kind == "governor" and len(words) == 2:
            facts["governors"][words[0]] = words[1]
        elif kind == "thermal" and len(words) == 2 and words[1].lstrip("-").isdigit():
            facts["thermal_c"][words[0]] = int(words[1]) / 1000.0
        elif kind == "binary":
            has_binary = words == ["yes"]
    clusters: dict[int, list[int]] = {}
    for cpu, khz in facts["max_freq_khz"].items():
        clusters.setdefault(khz, []).append(int(cpu))
    facts["clusters"] = [{"max_khz": k, "cpus": sorted(v)} for k, v in sorted(clusters.items())]
    facts["affinity"] = facts.get("online_cpus", [])
    facts["cpu_count"] = len(facts["affinity"])
    facts["runtimes"] = {
        "litert": {"module": "benchmark_model", "version": None, "path": binary} if has_binary else None
    }
    return facts
