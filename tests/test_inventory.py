"""Inventory validation: each bad input names the file, the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwlab.errors import DeviceNotFoundError, InventoryError
from hwlab.inventory import PACKAGED_DEVICES, get_device, load_inventory


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def test_shipped_inventory_is_valid() -> None:
    devices = load_inventory(PACKAGED_DEVICES)
    assert {"local", "rk3399", "pixel", "jetson"} <= set(devices)
    assert devices["local"].transport == "local" and not devices["local"].example
    for name in ("rk3399", "pixel", "jetson"):
        assert devices[name].example, f"{name} must be marked as an example to edit"
    assert devices["rk3399"].core_mask == (4, 5)
    assert devices["pixel"].serial and devices["pixel"].transport == "adb"


def test_local_is_always_there(tmp_path: Path) -> None:
    assert load_inventory(tmp_path)["local"].transport == "local"


@pytest.mark.parametrize(
    ("text", "field", "problem", "fix"),
    [
        (
            "name: b\ntransport: ssh\nhost: h\nprot: 22\n",
            "prot",
            "is not a known key",
            "did you mean 'port'?",
        ),
        (
            "name: b\ntransport: ssh\nhost: h\nport: twenty\n",
            "port",
            "expected an integer, got str 'twenty'",
            "set 'port'",
        ),
        ("name: b\ntransport: ssh\nhost: h\nport: 70000\n", "port", "must be a TCP port", "fix 'port'"),
        ("name: b\ntransport: ssh\n", "host", "is required for an ssh device", "add 'host: ...'"),
        ("name: b\ntransport: adb\n", "serial", "is required for an adb device", "add 'serial: ...'"),
        ("name: b\ntransport: telnet\n", "transport", "must be one of local, ssh, adb", "fix 'transport'"),
        ("transport: local\n", "name", "is required for every device", "add 'name: ...'"),
        ("name: b\ntransport: local\nthreads: 0\n", "threads", "must be >= 1", "fix 'threads'"),
        (
            "name: b\ntransport: local\nthreads: true\n",
            "threads",
            "expected an integer, got bool",
            "set 'threads'",
        ),
        (
            "name: b\ntransport: local\ncore_mask: [a]\n",
            "core_mask",
            "must be a list of CPU ids",
            "fix 'core_mask'",
        ),
        (
            "name: b\ntransport: local\nruntimes: [tensorrt]\n",
            "runtimes",
            "unknown ['tensorrt']",
            "fix 'runtimes'",
        ),
        ("name: other\ntransport: local\n", "name", "is 'other' but the file is b.yaml", "set name: b"),
    ],
)
def test_bad_inventory_names_file_field_and_fix(tmp_path: Path, text: str, field: str, problem: str, fix: str) -> None:
    path = write(tmp_path, "b", text)
    with pytest.raises(InventoryError) as info:
        load_inventory(tmp_path)
    err = info.value
    assert err.path == str(path)
    assert err.field == field
    assert problem in err.message
    assert fix in (err.hint or "")
    assert str(path) in str(err) and field in str(err)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    write(tmp_path, "b", "name: b\ntransport: [local\n")
    with pytest.raises(InventoryError, match=r"b\.yaml: is not valid YAML at line \d"):
        load_inventory(tmp_path)


def test_not_a_mapping(tmp_path: Path) -> None:
    write(tmp_path, "b", "- just\n- a list\n")
    with pytest.raises(InventoryError, match="must be a YAML mapping"):
        load_inventory(tmp_path)


def test_unknown_device_suggests_a_close_name(tmp_path: Path) -> None:
    write(tmp_path, "board", "name: board\ntransport: ssh\nhost: 10.0.0.2\n")
    with pytest.raises(DeviceNotFoundError) as info:
        get_device("bord", tmp_path)
    assert "did you mean 'board'?" in str(info.value)


def test_valid_ssh_device(tmp_path: Path) -> None:
    write(
        tmp_path,
        "board",
        "name: board\ntransport: ssh\nhost: b.lan\nuser: pi\nport: 2222\ncore_mask: [4, 5]\n",
    )
    dev = get_device("board", tmp_path)
    assert dev.address == "pi@b.lan:2222"
    assert dev.core_mask == (4, 5)
    assert dev.runtimes == ("onnxruntime", "litert", "torch")
