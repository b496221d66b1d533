"""Put the runner and model files into a device's workdir, content-addressed.

Everything lands under a name derived from its content (the runner's folder
from a digest of its sources, each model as ``<sha256>.<ext>``), so a rerun
pushes nothing that is already there and two versions never collide.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hwlab_runner
from hwlab_runner.job import Job, job_to_json

from hwlab import jsonfile
from hwlab.cache import cache_dir
from hwlab.errors import RunnerError
from hwlab.inventory import DeviceSpec
from hwlab.transport import Transport

RUNNER_SOURCE = Path(hwlab_runner.__file__).resolve().parent


def runner_files() -> list[Path]:
    return sorted(p for p in RUNNER_SOURCE.glob("*.py"))


def runner_digest() -> str:
    h = hashlib.sha256()
    for path in runner_files():
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def default_workdir(device: DeviceSpec) -> str:
    if device.workdir:
        return device.workdir
    if device.transport == "local":
        return str(cache_dir() / f"device-{device.name}")
    return "/data/local/tmp/hwlab" if device.transport == "adb" else "/tmp/hwlab"


def device_python(device: DeviceSpec) -> str:
    """The interpreter that runs the runner: this one for the local host, else the inventory's or python3."""
    if device.python:
        return device.python
    return sys.executable if device.transport == "local" else "python3"


@dataclass
class Deployer:
    """Pushes what a job needs, once; counts what it pushed (a rerun should push nothing)."""

    transport: Transport
    device: DeviceSpec
    pushed: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir = self.transport.expand(default_workdir(self.device))
        self._listing: dict[str, set[str]] = {}

    def path(self, *parts: str) -> str:
        return posixpath.join(self.workdir, *parts)

    def _present(self, folder: str) -> set[str]:
        if folder not in self._listing:
            self.transport.mkdir(folder)
            self._listing[folder] = set(self.transport.listdir(folder))
        return self._listing[folder]

    def _push(self, local: str, folder: str, name: str) -> str:
        present = self._present(folder)
        remote = posixpath.join(folder, name)
        if name not in present:
            self.transport.push(local, remote)
            present.add(name)
            self.pushed.append(remote)
        return remote

    def runner(self) -> str:
        """Deploy the runner; returns the folder to put on PYTHONPATH."""
        base = self.path("runner", runner_digest())
        pkg = posixpath.join(base, "hwlab_runner")
        for src in runner_files():
            self._push(str(src), pkg, src.name)
        return base

    def model(self, local: Path, sha256: str) -> str:
        return self._push(str(local), self.path("models"), f"{sha256}{local.suffix}")

    def data(self, local: Path, sha256: str) -> str:
        """Deploy a model's input data (an .npz)."""
        return self._push(str(local), self.path("data"), f"{sha256}.npz")

    def job(self, job: Job) -> str:
        """Deploy a job file; its name is its content's digest."""
        text = json.dumps(job_to_json(job), sort_keys=True)
        name = f"job-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / name
            local.write_text(text)
            return self._push(str(local), self.path("jobs"), name)

    def runner_command(self, *args: str) -> tuple[list[str], dict[str, str]]:
        """The argv and environment that start the deployed runner."""
        return [device_python(self.device), "-m", "hwlab_runner", *args], {"PYTHONPATH": self.runner()}

    def facts(self, timeout: float = 120.0) -> dict[str, Any]:
        """What the device is, as the runner's ``facts`` command reports it."""
        argv, env = self.runner_command("facts")
        done = self.transport.run(argv, timeout=timeout, env=env)
        if done.rc != 0:
            raise RunnerError(
                f"the runner could not start on {self.device.name!r} (exit {done.rc}): {done.stderr.strip()[-500:]}",
                hint=f"check that {device_python(self.device)!r} is Python >= 3.8 with numpy on the device",
            )
        try:
            return jsonfile.loads(done.stdout)
        except ValueError:
            raise RunnerError(f"the runner's facts were not JSON: {done.stdout[:200]!r}") from None
