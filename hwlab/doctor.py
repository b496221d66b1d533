"""What a device lacks for profiling, and how to fix each thing.

Checked in the order a profile needs them: a Python the runner can use, numpy,
the device's facts (the runner's, or its shell's on a device that has TFLite's
``benchmark_model`` instead of Python), each runtime of the inventory, then what
device control would need (governor permission, thermal and power readings).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from hwlab.errors import HwlabError
from hwlab.inventory import DeviceSpec
from hwlab.measure.deploy import Deployer, device_python
from hwlab.measure.facts import device_facts
from hwlab.measure.runtimes import PIP_PACKAGE, runtime_fact
from hwlab.transport import Transport

GOVERNOR = "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"
ORDER = {"missing": 0, "warn": 1, "ok": 2}


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


def _python_problem(device: DeviceSpec, transport: Transport) -> Finding | None:
    """Why the runner cannot run on the device (None when its Python and numpy are there)."""
    python = device_python(device)
    probe = transport.run(
        [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2]); import numpy"], timeout=120
    )
    first = (probe.stdout.strip().splitlines() or [""])[0]
    found = re.fullmatch(r"(\d+)\.(\d+)", first.strip())
    if found is None:  # no interpreter there (a shell without mktemp merges its error into stdout)
        return Finding("missing", f"no Python at {python!r} on the device", _python_fix(device))
    if (int(found[1]), int(found[2])) < (3, 8):
        return Finding("missing", f"{python} is Python {first}; the runner needs >= 3.8", _python_fix(device))
    if probe.rc != 0:
        return Finding("missing", f"numpy is not importable by {python}", f"{python} -m pip install numpy")
    return None


def diagnose(device: DeviceSpec, transport: Transport) -> tuple[dict[str, Any] | None, list[Finding]]:
    """The device's facts (None when nothing can describe it) and the findings, worst first."""
    findings: list[Finding] = []
    no_runner = _python_problem(device, transport)
    if no_runner is not None and not device.benchmark_model:
        return None, [no_runner]
    if no_runner is not None:  # the shell describes it; only litert can be measured, with benchmark_model
        findings.append(Finding("warn", f"{no_runner.what}: only litert, through benchmark_model", no_runner.fix))
    try:
        facts = device_facts(Deployer(transport, device))
    except HwlabError as err:
        return None, [*findings, Finding("missing", f"the device cannot be described: {err.message}", err.hint or "")]
    if no_runner is None:
        findings.append(Finding("ok", f"Python {facts.get('python')} with numpy"))
    findings.extend(_runtime_findings(device, facts, runner=no_runner is None))
    findings.extend(_control_findings(device, transport, facts, runner=no_runner is None))
    return facts, sorted(findings, key=lambda f: ORDER[f.level])


def _runtime_findings(device: DeviceSpec, facts: dict[str, Any], *, runner: bool) -> list[Finding]:
    python = device_python(device)
    out = []
    for runtime in device.runtimes:
        found = runtime_fact(facts, runtime)
        by_binary = runtime == "litert" and device.benchmark_model
        if found and found.get("error"):
            out.append(Finding("missing", f"{runtime} is installed but fails to import: {found['error']}",
                               f"{python} -m pip install --force-reinstall {PIP_PACKAGE[runtime]}"))  # fmt: skip
        elif found:
            version = f" {found['version']}" if found.get("version") else ""
            out.append(Finding("ok", f"{runtime}{version} ({found['module']})"))
        elif by_binary:
            out.append(Finding("missing", f"{runtime}: no executable benchmark_model at {device.benchmark_model!r}",
                               "copy TFLite's benchmark_model there and make it executable (chmod +x)"))  # fmt: skip
        elif runner:
            out.append(Finding("missing", f"{runtime} is not installed",
                               f"{python} -m pip install {PIP_PACKAGE[runtime]}"))  # fmt: skip
        else:
            out.append(Finding("missing", f"{runtime} needs hwlab's runner, which needs Python", _python_fix(device)))
    return out


def _control_findings(
    device: DeviceSpec, transport: Transport, facts: dict[str, Any], *, runner: bool
) -> list[Finding]:
    out: list[Finding] = []
    if not facts.get("governors"):
        out.append(Finding("warn", "no cpufreq in sysfs (a VM or container?): frequencies are not recorded"))
    elif not runner:
        level = "missing" if device.governor else "warn"
        out.append(Finding(level, "benchmark_model cannot set the cpufreq governor", "set it by hand (as root)"))
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
