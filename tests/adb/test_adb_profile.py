"""A whole profile over adb: the stand-in phone runs the real runner, the host keeps the table."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from adbd_standin import StandIn
from gated_runner import gated_python, recording_python, running, start_long_profile

from hwlab.errors import DeviceOffline, HwlabError
from hwlab.inventory import DeviceSpec
from hwlab.measure.settings import stopping
from hwlab.profile import ProfileRequest, profile
from hwlab.space import get_space
from hwlab.tables import LookupTable, TableId
from hwlab.transport.adb import AdbTransport

FAST = stopping(min_time_s=0.01, max_time_s=0.2, min_count=5)


class CountingAdb(AdbTransport):
    """Counts pushes, to show a second profile deploys nothing."""

    pushes: list[str]

    def push(self, local: str, remote: str) -> None:
        self.pushes.append(remote)
        super().push(local, remote)


def counting(serial: str) -> CountingAdb:
    transport = CountingAdb(serial)
    transport.pushes = []
    return transport


def request(device: DeviceSpec, tables: Path) -> ProfileRequest:
    return ProfileRequest(
        device=device,
        backend="onnxruntime",
        specs=get_space("generic", count=3, seed=1),
        space="generic",
        space_params={"count": 3, "seed": 1},
        tables_root=tables,
        settings=FAST,
    )


def phone_spec(standin: StandIn, python: str) -> DeviceSpec:
    return DeviceSpec(
        name="phone",
        transport="adb",
        serial=standin.serial,
        workdir=str(standin.root / "hwlab"),
        python=python,
        source="<test>",
    )


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWLAB_CACHE", str(tmp_path / "cache"))


def test_profile_over_adb_then_rerun_measures_and_pushes_nothing(standin: StandIn, tmp_path: Path) -> None:
    req = request(phone_spec(standin, sys.executable), tmp_path / "tables")
    first = counting(standin.serial)
    report = profile(req, transport=first)
    first.close()
    assert [r["status"] for r in report.measured] == ["ok"] * 3
    assert report.pushed == len(first.pushes) > 0
    assert len(LookupTable.at(tmp_path / "tables", TableId("phone", "onnxruntime", "generic"))) == 3

    again = counting(standin.serial)
    report = profile(req, transport=again)
    again.close()
    assert (report.skipped, report.measured, again.pushes) == (3, [], [])


def test_phone_going_away_mid_profile_keeps_rows_and_the_rerun_measures_the_rest(
    standin: StandIn, tmp_path: Path
) -> None:
    gate = standin.root / "gate"
    req = request(phone_spec(standin, gated_python(standin.root / "gated-python", gate, 1)), tmp_path / "tables")
    rows = LookupTable.at(tmp_path / "tables", req.table_id).folder / "ops.jsonl"

    def unplug_after_first_row() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if rows.exists() and rows.read_bytes().count(b"\n") >= 1:
                break
            time.sleep(0.05)
        standin.kill()  # after the first row, or at the deadline (the asserts below then fail)

    killer = threading.Thread(target=unplug_after_first_row)
    killer.start()
    with pytest.raises(HwlabError) as err:
        profile(req, transport=AdbTransport(standin.serial))
    killer.join()
    assert isinstance(err.value, DeviceOffline) and err.value.state == "gone"
    assert len(LookupTable.at(tmp_path / "tables", req.table_id)) == 1

    standin.start()  # the same port and sandbox: the phone is back
    gate.touch()
    report = profile(req, transport=AdbTransport(standin.serial))
    assert report.skipped == 1 and [r["status"] for r in report.measured] == ["ok"] * 2
    assert len(LookupTable.at(tmp_path / "tables", req.table_id)) == 3


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name)
def test_a_terminated_profile_stops_its_runner_on_the_phone(
    standin: StandIn, tmp_path: Path, sig: signal.Signals
) -> None:
    """SIGTERM or Ctrl-C to hwlab mid-job: its adb client is stopped and the runner too, by its pid; SIGKILL:
    hwlab runs no code, adbd hangs the command up and the runner, its shell gone, stops itself."""
    pid_file = tmp_path / "runner.pid"
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    python = recording_python(standin.root / "recording-python", pid_file)
    (inventory / "phone.yaml").write_text(
        f"name: phone\ntransport: adb\nserial: '{standin.serial}'\n"
        f"workdir: {standin.root / 'hwlab'}\npython: {python}\n"
    )
    proc, runner = start_long_profile("phone", inventory, tmp_path / "t", pid_file)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if sig != signal.SIGKILL:
        assert proc.returncode == 128 + sig and "every finished row is kept" in err, err
    deadline = time.monotonic() + 100  # the hang-up reaches the phone's shell after adb is gone; the job runs 360 s
    while running(runner) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(runner)
