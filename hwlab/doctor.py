"""What a device lacks for profiling, and how to fix each thing.

Checked in the order a profile needs them: a Python the runner can use, numpy,
the runner's facts, each runtime of the inventory, then what device control
would need (governor permission, thermal and power readings).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hwlab.deploy import Deployer, device_python
from hwlab.errors import HwlabError
from hwlab.inventory import DeviceSpec
from hwlab.profile import PIP_PACKAGE, runtime_version
from hwlab.transport import Transport

GOVERNOR = "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"


@dataclass(frozen=True)
class Finding:
    """One check: ``ok``, ``warn`` (works, with less) or ``missing`` (blocks profiling)."""

    level: str
    what: str
    fix: str = ""


def _python_fix(device: DeviceSpec) -> str:
    if device.transport == "adb":
        fix = "install Termux and `pkg install python python-numpy`, then set python: in the inventory"
        return fix + "; or set benchmark_model: to TFLite's benchmark_model binary to measure .tflite without Python"
    return (
        "install Python >= 3.8 with numpy (Debian: apt install python3 python3-numpy), or set python: in the inventory"
    )


def diagnose(device: DeviceSpec, transport: Transport) -> tuple[dict[str, Any] | None, list[Finding]]:
    """The device's facts (None when the runner cannot start) and the findings, worst first."""
    findings: list[Finding] = []
    python = device_python(device)
    probe = transport.run(
        [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2]); import numpy"], timeout=120
    )
    version = probe.stdout.strip().splitlines()[:1]
    if not version:
        findings.append(Finding("missing", f"no Python at {python!r} on the device", _python_fix(device)))
        return None, findings
    if tuple(map(int, version[0].split("."))) < (3, 8):
        findings.append(
            Finding("missing", f"{python} is Python {version[0]}; the runner needs >= 3.8", _python_fix(device))
        )
        return None, findings
    if probe.rc != 0:
        findings.append(Finding("missing", f"numpy is not importable by {python}", f"{python} -m pip install numpy"))
        return None, findings
    try:
        facts = Deployer(transport, device).facts()
    except HwlabError as err:
        findings.append(Finding("missing", f"the runner cannot start: {err.message}", err.hint or ""))
        return None, findings
    findings.append(Finding("ok", f"Python {facts.get('python')} with numpy"))
    for runtime in device.runtimes:
        found = runtime_version(facts, runtime)
        if found:
            findings.append(Finding("ok", f"{runtime} {found}"))
        else:
            findings.append(
                Finding("missing", f"{runtime} is not installed", f"{python} -m pip install {PIP_PACKAGE[runtime]}")
            )
    findings.extend(_control_findings(device, transport, facts))
    order = {"missing": 0, "warn": 1, "ok": 2}
    return facts, sorted(findings, key=lambda f: order[f.level])


def _control_findings(device: DeviceSpec, transport: Transport, facts: dict[str, Any]) -> list[Finding]:
    out: list[Finding] = []
    if not facts.get("governors"):
        out.append(Finding("warn", "no cpufreq in sysfs (a VM or container?): frequencies are not recorded"))
    elif transport.run(["test", "-w", GOVERNOR], timeout=30).rc == 0:
        out.append(Finding("ok", "cpufreq governor can be set (--governor performance)"))
    else:
        level = "missing" if device.governor else "warn"
        out.append(
            Finding(level, "no permission to set the cpufreq governor", "run as root on the device, or set it by hand")
        )
    if not facts.get("thermal_c"):
        out.append(Finding("warn", "no thermal zone readable: temperatures are not recorded, cooldown can only pause"))
    if not facts.get("clusters") and isinstance(device.core_mask, str) and device.core_mask != "all":
        out.append(
            Finding("warn", f"core_mask {device.core_mask!r} cannot be resolved: no CPU clusters", "list CPU ids")
        )
    return out
