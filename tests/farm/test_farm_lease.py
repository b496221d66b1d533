"""Leases: a live holder excludes, a dead one (or an expired one) never blocks the next run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hwlab.errors import DeviceBusy
from hwlab.lease import device_lease, lease_dir, read_lease

HOLD = ("import sys\nfrom hwlab.lease import device_lease\n"
        "with device_lease('board', owner='holder', ttl_s=float(sys.argv[1])):\n"
        "    print('held', flush=True)\n    sys.stdin.readline()\n")  # fmt: skip


def _holder(ttl_s: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(ttl_s)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=os.environ.copy())  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWLAB_CACHE", str(tmp_path / "cache"))


def test_a_live_holder_excludes_and_a_killed_one_does_not_block() -> None:
    holder = _holder(ttl_s=600)
    try:
        with pytest.raises(DeviceBusy, match=rf"pid {holder.pid} .*holder"), device_lease("board"):
            pass
        holder.send_signal(signal.SIGKILL)  # killed: its lease record stays, with ten minutes left
        holder.wait()
        assert read_lease("board") is not None and read_lease("board").pid == holder.pid  # type: ignore[union-attr]
        with device_lease("board", owner="next night") as lease:  # taken at once: its holder is gone
            assert read_lease("board").owner == "next night" and not lease.lost  # type: ignore[union-attr]
        assert read_lease("board") is None  # released
    finally:
        holder.kill()
        holder.wait()


def test_a_lease_of_another_host_holds_until_it_expires() -> None:
    record = {"device": "board", "owner": "farm run on lab2", "host": "lab2.example", "boot": "b", "pid": 1,
              "start": None, "acquired_at": time.time(), "expires_at": time.time() + 600}  # fmt: skip
    lease_dir().mkdir(parents=True)
    (lease_dir() / "board.json").write_text(json.dumps(record))
    with pytest.raises(DeviceBusy, match="lab2.example"), device_lease("board"):
        pass
    (lease_dir() / "board.json").write_text(json.dumps({**record, "expires_at": time.time() - 1}))
    with device_lease("board", owner="here"):
        assert read_lease("board").host != "lab2.example"  # type: ignore[union-attr]


def test_a_lease_is_renewed_while_held_and_reused_by_nested_work() -> None:
    with device_lease("board", owner="farm", ttl_s=0.6) as lease:
        first = read_lease("board").expires_at  # type: ignore[union-attr]
        time.sleep(1.0)  # past the first expiry: renewed meanwhile
        held = read_lease("board")
        assert held is not None and held.expires_at > first and held.owner == "farm"
        assert not held.free(time.time())
        with device_lease("board") as inner:  # a profile inside the farm's night: the same lease
            assert inner is lease
        assert read_lease("board") is not None  # the inner exit did not release the outer lease
    assert read_lease("board") is None


def test_waiting_queues_behind_a_holder() -> None:
    holder = _holder(ttl_s=60)
    try:
        assert holder.stdin is not None
        holder.stdin.write("go\n")
        holder.stdin.flush()
        with device_lease("board", wait_s=60):
            assert read_lease("board").pid == os.getpid()  # type: ignore[union-attr]
    finally:
        holder.wait()
