"""Inventory validation: each bad input names the file, the field and the fix."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from hwlab.errors import DeviceNotFoundError, InventoryError, TransportError
from hwlab.inventory import PACKAGED_DEVICES, get_device, load_inventory
from hwlab.transport.ssh import SshTarget


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
            "name: b\ntransport: ssh\nhost: h\nconnect_timeout_s: 0\n",
            "connect_timeout_s",
            "must be a number of seconds",
            "fix 'connect_timeout_s'",
        ),
        (
            "name: b\ntransport: ssh\nhost: h\nconnect_timeout_s: .nan\n",
            "connect_timeout_s",
            "in (0, 3600]",
            "fix 'connect_timeout_s'",
        ),
        (
            "name: b\ntransport: ssh\nhost: h\nconnect_timeout_s: soon\n",
            "connect_timeout_s",
            "expected an integer or a number",
            "set 'connect_timeout_s'",
        ),
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


@pytest.mark.parametrize(
    ("field", "value"),
    [("host", "127.0.0.1;touch PWNED"), ("host", "$(touch PWNED)"), ("host", "a b"), ("user", "root;id"),
     ("host", "fe80::1%;touch PWNED;true"), ("host", "[fe80::1%$(id)]"), ("name", "../outside"),
     ("serial", "x;reboot")],
)  # fmt: skip
def test_names_that_could_reach_a_shell_or_leave_a_folder_are_refused(tmp_path: Path, field: str, value: str) -> None:
    fields = {"name": "board", "transport": "ssh" if field != "serial" else "adb", "host": "127.0.0.1",
              "serial": "0123456789ABCDEF", field: value}  # fmt: skip
    if fields["transport"] == "adb":
        del fields["host"]
    text = "".join(f"{k}: {json.dumps(v)}\n" for k, v in fields.items())
    write(tmp_path, "board", text)
    with pytest.raises(InventoryError) as err:
        load_inventory(tmp_path)
    assert err.value.field == field


def test_a_host_with_shell_characters_never_reaches_match_exec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The class of CVE-2023-51385: ~/.ssh/config's `Match exec` expands %h into a shell command."""
    monkeypatch.setattr(sys, "stdin", open(os.devnull))  # noqa: SIM115 (the runner of Match exec reads stdin)
    ran = tmp_path / "ran"
    ran.mkdir()
    config = tmp_path / "ssh_config"
    config.write_text(f'Match exec "touch {ran}/%h"\n  User someone\n')
    assert SshTarget.resolve("board1", ssh_config=str(config)).user == "someone"  # the config is read, exec runs
    assert [p.name for p in ran.iterdir()] == ["board1"]
    pwned = tmp_path / "PWNED"
    with pytest.raises(TransportError, match="shell characters"):
        SshTarget.resolve(f"x;touch {pwned}", ssh_config=str(config))
    with pytest.raises(TransportError, match="shell characters"):  # Python takes any text as an IPv6 zone
        SshTarget.resolve("fe80::1%;touch PWNED;true", ssh_config=str(config))
    assert not pwned.exists() and not (Path.cwd() / "PWNED").exists()
    assert [p.name for p in ran.iterdir()] == ["board1"]
    assert SshTarget.resolve("fe80::1%eth0", ssh_config=str(config)).user == "someone"  # a real zone is a host


# Nine levels of nine references: 9**9 (387 million) nodes once expanded, a few hundred bytes as text.
ALIAS_BOMB = ("l0: &l0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))).encode()  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "said"),
    [(b"name: a\nname: b\ntransport: local\n", "key 'name' appears twice"),
     (b"\x00\x01\x02binary", "is binary"),
     ("name: caf\u00e9\ntransport: local\n".encode("latin-1"), "is not UTF-8 text"),
     (ALIAS_BOMB, "refused as a bomb"),
     (b"[unclosed\n", "is not valid YAML at line"),
     (b"- just\n- a list\n", "must be a YAML mapping")],
)  # fmt: skip
def test_malformed_inventory_files_name_the_file_and_the_fix(tmp_path: Path, raw: bytes, said: str) -> None:
    (tmp_path / "board.yaml").write_bytes(raw)
    with pytest.raises(InventoryError) as err:
        load_inventory(tmp_path)
    assert said in str(err.value) and str(tmp_path / "board.yaml") in str(err.value) and err.value.hint


def test_a_named_inventory_folder_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InventoryError, match="is not a folder"):
        load_inventory(tmp_path / "typo")
    monkeypatch.setenv("HWLAB_DEVICES", str(tmp_path / "typo"))
    with pytest.raises(InventoryError, match="is not a folder"):
        load_inventory()
