"""The device inventory: one YAML file per device in ``devices/``.

A spec only says *where* a device is and what it has (labgrid's resource);
transports hold the behaviour. Everything is validated when the file is
loaded, so a bad inventory fails at once with the file, the field and the fix,
never halfway through a nightly run.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwlab.errors import DeviceNotFoundError, InventoryError
from hwlab.names import host_problem, name_problem, serial_problem, user_problem
from hwlab.yamlfile import YamlProblem, read_yaml

TRANSPORTS = ("local", "ssh", "adb")
RUNTIMES = ("onnxruntime", "litert", "torch")
PACKAGED_DEVICES = Path(__file__).resolve().parent.parent / "devices"


@dataclass(frozen=True)
class Field:
    """One inventory key: its type, whether it is required, and what it means."""

    kind: type | tuple[type, ...]
    help: str
    required: bool = False
    default: Any = None
    check: Callable[[Any], str | None] | None = None  # returns a problem, or None when fine


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}, not {v!r}"


def _each_in(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(values: list[Any]) -> str | None:
        bad = [v for v in values if v not in choices]
        return f"unknown {bad!r}; known: {', '.join(choices)}" if bad else None

    return check


CORE_MASK_RULES = ("big", "little", "all")


def _cpu_ids(values: list[Any] | str) -> str | None:
    if isinstance(values, str):
        return None if values in CORE_MASK_RULES else f"must be a list of CPU ids or one of {CORE_MASK_RULES}"
    if not values:
        return "must list at least one CPU id (or be left out to use every core)"
    if any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in values):
        return f"must be a list of CPU ids (integers >= 0), not {values!r}"
    return None


def _positive(v: int) -> str | None:
    return None if v >= 1 else f"must be >= 1, not {v}"


def _seconds(v: float) -> str | None:
    return None if 0 < v <= 3600 else f"must be a number of seconds in (0, 3600], not {v}"


def _port(v: int) -> str | None:
    return None if 1 <= v <= 65535 else f"must be a TCP port in 1..65535, not {v}"


SCHEMA: dict[str, Field] = {
    "name": Field(str, "device name used on the command line (--device NAME)", required=True, check=name_problem),
    "transport": Field(str, "how hwlab reaches it: local, ssh or adb", required=True, check=_one_of(TRANSPORTS)),
    "description": Field(str, "free text shown by `hwlab devices`", default=""),
    "example": Field(bool, "true for a template to copy and edit; such a device is never profiled", default=False),
    "emulated": Field(bool, "true when the device is an emulator; every row it produces says so", default=False),
    "host": Field(str, "SSH host name or address (or a Host alias of ~/.ssh/config)", check=host_problem),
    "port": Field(int, "SSH port", check=_port),
    "user": Field(str, "SSH user", check=user_problem),
    "key_file": Field(str, "SSH private key file"),
    "known_hosts": Field(str, "known_hosts file that verifies the SSH host key (default ~/.ssh/known_hosts)"),
    "connect_timeout_s": Field(
        (int, float),
        "seconds to wait for the SSH connection, banner and login (a slow link wants more)",
        check=_seconds,
    ),  # fmt: skip
    "serial": Field(str, "ADB serial (USB serial or host:port)", check=serial_problem),
    "workdir": Field(str, "folder on the device where the runner and models are placed"),
    "python": Field(str, "Python interpreter on the device that runs the runner"),
    "arch": Field(str, "CPU architecture, e.g. aarch64 or x86_64", default=""),
    "soc": Field(str, "system on chip, e.g. RK3399", default=""),
    "runtimes": Field(list, "runtimes to profile with", default=list(RUNTIMES), check=_each_in(RUNTIMES)),
    "threads": Field(int, "default intra-op threads", default=1, check=_positive),
    "core_mask": Field(
        (list, str), "CPU ids to pin the runner to, or big / little (derived from sysfs) / all", check=_cpu_ids
    ),
    "governor": Field(str, "cpufreq governor to set while measuring (e.g. performance); restored afterwards"),
    "benchmark_model": Field(str, "path of TFLite's benchmark_model binary on the device (phones without Python)"),
    "thermal_zones": Field(list, "thermal zone types to read (default: all readable)", default=[]),
    "power_sensors": Field(list, "power sensors to sample while measuring", default=[]),
    "tags": Field(list, "free labels for selecting devices", default=[]),
}

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list",
               dict: "a mapping"}  # fmt: skip


@dataclass(frozen=True)
class DeviceSpec:
    """A validated inventory entry."""

    name: str
    transport: str
    source: str
    description: str = ""
    example: bool = False
    emulated: bool = False
    host: str | None = None
    port: int | None = None
    user: str | None = None
    key_file: str | None = None
    known_hosts: str | None = None
    connect_timeout_s: float = 15.0
    serial: str | None = None
    workdir: str | None = None
    python: str | None = None
    arch: str = ""
    soc: str = ""
    runtimes: tuple[str, ...] = RUNTIMES
    threads: int = 1
    core_mask: tuple[int, ...] | str | None = None
    governor: str | None = None
    benchmark_model: str | None = None
    thermal_zones: tuple[str, ...] = ()
    power_sensors: tuple[str, ...] = ()
    tags: tuple[str, ...] = field(default=())

    @property
    def address(self) -> str:
        """Where the device is, in one short string for listings."""
        if self.transport == "ssh":
            user = f"{self.user}@" if self.user else ""
            port = f":{self.port}" if self.port else ""
            return f"{user}{self.host}{port}"
        if self.transport == "adb":
            return self.serial or ""
        return "this host"


LOCAL_DEFAULT = DeviceSpec(name="local", transport="local", source="<built-in>", description="the host hwlab runs on")


def check_field(path: str, key: str, rule: Field, value: Any, error: type[InventoryError] = InventoryError) -> Any:
    """``value`` when it has the rule's type and passes its check; otherwise ``error`` naming the file, the
    key and the fix (the farm plan's fields are checked the same way)."""
    kind = rule.kind if isinstance(rule.kind, tuple) else (rule.kind,)
    # YAML's booleans are ints in Python: keep them apart.
    wrong_bool = isinstance(value, bool) and bool not in kind
    if wrong_bool or not isinstance(value, kind):
        want = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kind)
        raise error(path, key, f"expected {want}, got {type(value).__name__} {value!r}",
                    f"set '{key}' to {want} ({rule.help})")  # fmt: skip
    if rule.check is not None:
        problem = rule.check(value)
        if problem:
            raise error(path, key, problem, f"fix '{key}': {rule.help}")
    return value


def _require(path: str, data: dict[str, Any], key: str, why: str) -> None:
    if data.get(key) in (None, ""):
        raise InventoryError(path, key, f"is required {why}", f"add '{key}: ...' ({SCHEMA[key].help})")


def parse_device(data: Any, path: str) -> DeviceSpec:
    """Validate one parsed YAML document and build its DeviceSpec."""
    if not isinstance(data, dict):
        raise InventoryError(path, None, "must be a YAML mapping of keys to values", "see devices/local.yaml")
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in SCHEMA:
            close = difflib.get_close_matches(str(key), SCHEMA, n=1)
            fix = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(SCHEMA)}"
            raise InventoryError(path, str(key), "is not a known key", fix)
        if value is not None:
            values[key] = check_field(path, key, SCHEMA[key], value)
    for key, rule in SCHEMA.items():
        if rule.required:
            _require(path, values, key, "for every device")
    transport = values["transport"]
    if transport == "ssh":
        _require(path, values, "host", "for an ssh device")
    if transport == "adb":
        _require(path, values, "serial", "for an adb device")
    stem = Path(path).stem
    if not path.startswith("<") and values["name"] != stem:
        raise InventoryError(
            path,
            "name",
            f"is {values['name']!r} but the file is {stem}.yaml",
            f"rename the file or set name: {stem}",
        )
    for key, rule in SCHEMA.items():
        if key not in values and rule.default is not None:
            values[key] = rule.default
    for key in ("runtimes", "core_mask", "thermal_zones", "power_sensors", "tags"):
        if isinstance(values.get(key), list):
            values[key] = tuple(values[key])
    return DeviceSpec(source=path, **values)


def load_device_file(path: Path) -> DeviceSpec:
    try:
        data, _ = read_yaml(path)
    except OSError as err:
        raise InventoryError(str(path), None, f"cannot be read ({err.strerror})", "check the path") from None
    except YamlProblem as err:
        raise InventoryError(str(path), None, str(err), "fix the file: one key per line, UTF-8 text") from None
    return parse_device(data, str(path))


def inventory_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The inventory folder: explicit, then $HWLAB_DEVICES, then ./devices, then the packaged one."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("HWLAB_DEVICES")
    if env:
        return Path(env)
    here = Path.cwd() / "devices"
    return here if here.is_dir() else PACKAGED_DEVICES


def load_inventory(directory: str | os.PathLike[str] | None = None) -> dict[str, DeviceSpec]:
    """Every device of the inventory by name; the local host is always there.

    A folder that was named (``--inventory DIR``, ``$HWLAB_DEVICES``) must exist: a typo would
    otherwise read as an empty inventory.
    """
    folder = inventory_dir(directory)
    named = bool(directory) or bool(os.environ.get("HWLAB_DEVICES"))
    if named and not folder.is_dir():
        raise InventoryError(str(folder), None, "is not a folder", "give the inventory folder (devices/*.yaml)")
    devices: dict[str, DeviceSpec] = {}
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        spec = load_device_file(path)
        if spec.name in devices:
            raise InventoryError(
                str(path),
                "name",
                f"{spec.name!r} is also defined in {devices[spec.name].source}",
                "use unique names",
            )
        devices[spec.name] = spec
    devices.setdefault("local", LOCAL_DEFAULT)
    return devices


def get_device(name: str, directory: str | os.PathLike[str] | None = None) -> DeviceSpec:
    devices = load_inventory(directory)
    if name not in devices:
        close = difflib.get_close_matches(name, devices, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "add devices/NAME.yaml (see devices/*.yaml for examples)"
        raise DeviceNotFoundError(
            f"no device named {name!r} in {inventory_dir(directory)}",
            hint=f"{hint}; known: {', '.join(devices)}",
        )
    return devices[name]
