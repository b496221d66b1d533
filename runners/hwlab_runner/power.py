"""Power sensors the kernel exposes, found under a sysfs ``root`` and named stably.

Each kind is a small class: ``available(root)`` lists what that kind finds,
an instance reads either instantaneous power (``read_w``) or a cumulative
energy counter (``read_uj``). Units follow the kernel documentation
(Documentation/hwmon/sysfs-interface.rst, hwmon/ina3221.rst,
ABI/testing/sysfs-class-power, power/powercap) and are converted here, once.

Names (stable across boots, used in a job's ``power.sensors``):

- ``ina3221:<rail>``          an INA3221 rail, e.g. ``ina3221:VDD_IN`` (both driver layouts;
                              ``ina3221:channel<N>`` for an unlabelled channel)
- ``hwmon:<chip>:<channel>``  a hwmon channel, e.g. ``hwmon:ina226:power1``
- ``rapl:<zone>``             a RAPL domain, e.g. ``rapl:package-0``, ``rapl:package-0/dram``
- ``power_supply:<supply>``   a power supply, e.g. ``power_supply:BAT0``

A request may also name a kind alone (``ina3221``, ``hwmon``, ``rapl``,
``power_supply``: its first sensor) or ``battery`` (the first supply whose type
is Battery). Names that repeat get ``#2``, ``#3``... in discovery order.
"""

from __future__ import annotations

import glob
import os
import re
from typing import Any, Sequence

HWMON_DIR = "sys/class/hwmon"
INA3221_IIO_GLOB = "sys/bus/i2c/drivers/ina3221x/*/iio:device*"
POWER_SUPPLY_DIR = "sys/class/power_supply"
POWERCAP_DIR = "sys/class/powercap"

LOOKED_FOR = "hwmon, ina3221, power_supply, powercap/rapl"
NO_SENSOR = f"no power sensor found (looked for {LOOKED_FOR})"

# A board's input rail measures the whole board: VDD_IN (Xavier, Orin), POM_5V_IN (Nano), VIN_SYS_5V0.
INPUT_RAIL = re.compile(r"(^|_)V?IN(_|$)")


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read().strip()


def _read_or_none(path: str) -> str | None:
    try:
        return _read(path)
    except OSError:
        return None


def _number(path: str) -> int:
    """An integer sysfs value; PermissionError, other OSError or ValueError when it cannot be had."""
    return int(_read(path))


def _index(path: str, pattern: str) -> int:
    match = re.search(pattern, os.path.basename(path))
    return int(match.group(1)) if match else -1


def _sorted_by_number(paths: list[str]) -> list[str]:
    return sorted(paths, key=lambda p: [int(n) for n in re.findall(r"\d+", os.path.basename(p))] or [-1])


class Sensor:
    """Somewhere the kernel reports power. ``counter`` sensors report cumulative energy instead."""

    kind = ""
    counter = False

    def __init__(self, name: str, description: str, path: str) -> None:
        self.name = name
        self.description = description
        self.path = path  # the file whose read fails first, named in error messages

    @classmethod
    def available(cls, root: str = "/") -> list[Sensor]:
        """Every sensor of this kind under ``root``, readable or not (see :meth:`check`)."""
        raise NotImplementedError

    def read_w(self) -> float:
        """Instantaneous power in watts."""
        raise NotImplementedError

    def read_uj(self) -> int:
        """The energy counter in µJ (counter sensors only)."""
        raise NotImplementedError

    def wrap_uj(self) -> int | None:
        """The value at which the counter wraps to 0 (counter sensors only); None when unknown."""
        return None

    def begin(self) -> None:
        """Forget what :meth:`details` gathered: a new window starts."""

    def details(self) -> dict[str, Any]:
        """Facts about the readings since :meth:`begin` worth keeping next to the numbers (kind-specific)."""
        return {}

    def permission_hint(self, path: str) -> str:
        return f"run the runner as root, or make it readable: sudo chmod a+r {path}"

    def check(self) -> str | None:
        """Read once: None when fine, else why this sensor cannot be used."""
        try:
            if self.counter:
                self.read_uj()
            else:
                self.read_w()
        except PermissionError as e:
            path = e.filename or self.path
            return f"permission denied reading {path}: {self.permission_hint(path)}"
        except (OSError, ValueError) as e:
            return f"cannot read {self.name} ({getattr(e, 'strerror', None) or e})"
        return None


class HwmonPower(Sensor):
    """A hwmon ``power*_input`` (or ``power*_average``) channel, in µW."""

    kind = "hwmon"

    def read_w(self) -> float:
        return _number(self.path) / 1e6

    @classmethod
    def available(cls, root: str = "/") -> list[Sensor]:
        found: list[Sensor] = []
        for hwmon in _sorted_by_number(glob.glob(os.path.join(root, HWMON_DIR, "hwmon*"))):
            chip = _read_or_none(os.path.join(hwmon, "name")) or os.path.basename(hwmon)
            if chip == "ina3221":
                continue  # named by rail, see Ina3221Hwmon
            found.extend(cls._channels(hwmon, chip))
        return found

    @classmethod
    def _channels(cls, hwmon: str, chip: str) -> list[Sensor]:
        found: list[Sensor] = []
        powers = {}
        for suffix in ("average", "input"):  # _input wins over _average for the same channel
            for path in glob.glob(os.path.join(hwmon, f"power*_{suffix}")):
                n = _index(path, rf"^power(\d+)_{suffix}$")
                if n >= 0:
                    powers[n] = path
        for n in sorted(powers):
            label = _read_or_none(os.path.join(hwmon, f"power{n}_label")) or f"power{n}"
            found.append(cls(f"hwmon:{chip}:{label}", f"hwmon {chip} {os.path.basename(powers[n])} (µW)", powers[n]))
        if powers:
            return found
        # No power channel: voltage × current pairs of the same index (in<N> mV, curr<N> mA).
        for curr in _sorted_by_number(glob.glob(os.path.join(hwmon, "curr*_input"))):
            n = _index(curr, r"^curr(\d+)_input$")
            volt = os.path.join(hwmon, f"in{n}_input")
            if n < 0 or not os.path.exists(volt):
                continue
            label = (
                _read_or_none(os.path.join(hwmon, f"curr{n}_label"))
                or _read_or_none(os.path.join(hwmon, f"in{n}_label"))
                or f"curr{n}"
            )
            found.append(VoltCurrent(f"hwmon:{chip}:{label}", f"hwmon {chip} in{n} (mV) × curr{n} (mA)", volt, curr))
        return found


class VoltCurrent(Sensor):
    """Power from a voltage in mV times a current in mA (hwmon ``in``/``curr`` pairs)."""

    kind = "hwmon"

    def __init__(self, name: str, description: str, volt_path: str, curr_path: str) -> None:
        super().__init__(name, description, curr_path)
        self.volt_path = volt_path

    def read_w(self) -> float:
        return _number(self.volt_path) * _number(self.path) / 1e6

    @classmethod
    def available(cls, root: str = "/") -> list[Sensor]:
        return [s for s in HwmonPower.available(root) if isinstance(s, cls)]


class Ina3221Hwmon(VoltCurrent):
    """An INA3221 rail, mainline hwmon driver: ``in<N>_label``, ``in<N>_input`` (mV), ``curr<N>_input`` (mA)."""

    kind = "ina3221"

    @classmethod
    def available(cls, root: str = "/") -> list[Sensor]:
        found: list[Sensor] = []
        for hwmon in _sorted_by_number(glob.glob(os.path.join(root, HWMON_DIR, "hwmon*"))):
            if _read_or_none(os.path.join(hwmon, "name")) != "ina3221":
                continue
            for n in (1, 2, 3):  # in4-7 are shunt voltages and their sum, not rails
                label = _read_or_none(os.path.join(hwmon, f"in{n}_label")) or f"channel{n}"
                volt, curr = os.path.join(hwmon, f"in{n}_input"), os.path.join(hwmon, f"curr{n}_input")
                if _read_or_none(os.path.join(hwmon, f"in{n}_enable")) == "0":
                    continue  # a channel with nothing connected
                if os.path.exists(volt) and os.path.exists(curr):
                    found.append(
                        cls(f"ina3221:{label}", f"INA3221 rail {label} ({hwmon}, in{n} × curr{n})", volt, curr)
                    )
        return found


class Ina3221Iio(Sensor):
    """An INA3221 rail, NVIDIA's ``ina3221x`` IIO driver: ``rail_name_<N>``, ``in_power<N>_input`` (mW)."""

    kind = "ina3221"

    def __init__(self, name: str, description: str, power_path: str, volt_path: str, curr_path: str) -> None:
        super().__init__(name, description, power_path)
        self.volt_path, self.curr_path = volt_path, curr_path

    def read_w(self) -> float:
        if os.path.exists(self.path):
            return _number(self.path) / 1e3
        return _number(self.volt_path) * _number(self.curr_path) / 1e6  # mV × mA

    @classmethod
    def available(cls, root: str = "/") -> list[Sensor]:
        found: list[Sensor] = []
        for device in sorted(glob.glob(os.path.join(root, INA3221_IIO_GLOB))):
            for rail_file in _sorted_by_number(glob.glob(os.path.join(device, "rail_name_*"))):
                n = _index(rail_file, r"^rail_name_(\d+)$")
                rail = _read_or_none(rail_file)
                if n < 0 or not rail:
                    continue
                power = os.path.join(device, f"in_power{n}_input")
                volt = os.path.join(device, f"in_voltage{n}_input")
                curr = os.path.join(device, f"in_current{n}_input")
                if os.path.exists(power) or (os.path.exists(volt) and os.path.exists(curr)):
                    found.append(
                        cls(f"ina3221:{rail}", f"INA3221 rail {rail} ({device}, channel {n})", power, volt, curr)
                    )
        return found


class PowerSupply(Sensor):
    """A battery or supply: ``power_now`` (µW), else |``current_now``| (µA) × ``voltage_now`` (µV).

    The kernel documents a negative current for a discharging battery, but drivers
    differ, so the absolute value is used and the signs seen are kept in ``details``.
    """

    kind = "power_supply"

    def __init__(self, name: str, description: str, folder: str, supply_type: str | None) -> None:
        power = os.path.join(folder, "power_now")
        super().__init__(name, description, power if os.path.exists(power) else os.path.join(folder, "current_now"))
        self.folder = folder
        self.supply_type = supply_type
        self.signs: set[str] = set()

    def read_w(self) -> float:
        if os.path.basename(self.path) == "power_now":
            return abs(_number(self.path)) / 1e6
        current = _number(self.path)
        volts = _number(os.path.join(self.folder, "voltage_now"))
        self.signs.add("negative" if current < 0 else "positive" if current > 0 else "zero")
        return abs(current) * volts / 1e12

    def begin(self) -> None:
        self.signs = set()

    def details(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.supply_type, "status": _read_or_none(os.path.join(self.folder, "status"))}
        if self.signs:
            # "negative" is the kernel's convention for a discharging battery; "positive" means
            # the other driver convention or a battery that is charging (then this is not the draw).
            out["current_sign"] = next(iter(self.signs)) if len(self.signs) == 1 else "mixed"
        return out

    @classmethod
    def available(cls, root: str = "/") -> list[Sensor]:
        found: list[PowerSupply] = []
        for folder in sorted(glob.glob(os.path.join(root, POWER_SUPPLY_DIR, "*"))):
            has_power = os.path.exists(os.path.join(folder, "power_now"))
            has_pair = all(os.path.exists(os.path.join(folder, f)) for f in ("current_now", "voltage_now"))
            if not (has_power or has_pair) or _read_or_none(os.path.join(folder, "scope")) == "Device":
                continue  # scope Device: a mouse or headset battery, not this machine's supply
            kind = _read_or_none(os.path.join(folder, "type"))
            supply = os.path.basename(folder)
            found.append(cls(f"power_supply:{supply}", f"power supply {supply} (type {kind})", folder, kind))
        # Batteries first: a plugged-in phone's USB supply does not show what the SoC draws.
        return sorted(found, key=lambda s: s.supply_type != "Battery")


class Rapl(Sensor):
    """A RAPL domain's energy counter (``energy_uj``, µJ), wrapping at ``max_energy_range_uj``."""

    kind = "rapl"
    counter = True

    def __init__(self, name: str, description: str, folder: str) -> None:
        super().__init__(name, description, os.path.join(folder, "energy_uj"))
        self.folder = folder

    def read_uj(self) -> int:
        return _number(self.path)

    def wrap_uj(self) -> int | None:
        text = _read_or_none(os.path.join(self.folder, "max_energy_range_uj"))
        return int(text) if text and text.isdigit() else None

    def permission_hint(self, path: str) -> str:
        return (
            "RAPL counters are readable by root only on kernels patched since late 2020; run the runner "
            f"as root, or once per boot: sudo chmod a+r {os.path.dirname(os.path.dirname(path))}/intel-rapl:*/energy_uj"
        )

    @classmethod
    def available(cls, root: str = "/") -> list[Sensor]:
        found: list[Sensor] = []
        base = os.path.join(root, POWERCAP_DIR)
        zones = [z for z in glob.glob(os.path.join(base, "intel-rapl:*")) if os.path.isdir(z)]
        # Packages first, then their sub-domains (core, uncore, dram), each in index order.
        for zone in sorted(
            zones, key=lambda z: (z.count(":"), [int(n) for n in re.findall(r"\d+", os.path.basename(z))])
        ):
            if not os.path.exists(os.path.join(zone, "energy_uj")):
                continue
            ident = os.path.basename(zone)
            label = _read_or_none(os.path.join(zone, "name")) or ident
            parent = ident.rsplit(":", 1)[0]
            if parent.count(":") >= 1:
                label = f"{_read_or_none(os.path.join(base, parent, 'name')) or parent}/{label}"
            found.append(cls(f"rapl:{label}", f"RAPL {label} energy counter ({zone}, µJ)", zone))
        return found


# Discovery order is the "auto" preference: board rails, hwmon meters, RAPL, batteries.
KINDS: tuple[type[Sensor], ...] = (Ina3221Hwmon, Ina3221Iio, HwmonPower, Rapl, PowerSupply)


def _unique(sensors: list[Sensor]) -> list[Sensor]:
    seen: dict[str, int] = {}
    for sensor in sensors:
        seen[sensor.name] = seen.get(sensor.name, 0) + 1
        if seen[sensor.name] > 1:
            sensor.name = f"{sensor.name}#{seen[sensor.name]}"
    return sensors


def candidates(root: str = "/") -> list[Sensor]:
    """Every sensor present under ``root``, in "auto" preference order, readable or not."""
    found: list[Sensor] = []
    for kind in KINDS:
        found.extend(kind.available(root))
    rails = [s for s in found if s.kind == "ina3221"]
    inputs = [s for s in rails if INPUT_RAIL.search(s.name.split(":", 1)[1])]
    others = [s for s in found if s.kind != "ina3221"]
    return _unique(inputs + [s for s in rails if s not in inputs] + others)


def survey(root: str = "/") -> tuple[list[Sensor], list[str]]:
    """(sensors that can be read, why each other one cannot)."""
    readable: list[Sensor] = []
    problems: list[str] = []
    for sensor in candidates(root):
        problem = sensor.check()
        if problem is None:
            readable.append(sensor)
        else:
            problems.append(problem)
    return readable, problems


def discover(root: str = "/") -> list[Sensor]:
    """Readable sensors under ``root``, best first."""
    return survey(root)[0]


def matches(sensor: Sensor, wanted: str) -> bool:
    """Whether a requested name means ``sensor``: its full name, its kind, or ``battery``."""
    if wanted == "battery":
        return isinstance(sensor, PowerSupply) and sensor.supply_type == "Battery"
    return wanted in (sensor.name, sensor.kind)


def choose(root: str = "/", wanted: Sequence[str] | None = None) -> tuple[Sensor | None, str | None]:
    """The sensor to use (None = auto: the best one; else the first requested name that is readable).

    Returns (sensor, None) or (None, a reason that says what was looked for and what went wrong).
    """
    readable, problems = survey(root)
    for name in wanted or ["*"]:
        for sensor in readable:
            if name == "*" or matches(sensor, name):
                return sensor, None
    trouble = f"; {'; '.join(problems)}" if problems else ""
    if wanted:
        names = ", ".join(s.name for s in readable) or "none"
        return (
            None,
            f"none of the requested power sensors ({', '.join(wanted)}) is readable here (readable: {names}){trouble}",
        )
    if problems:
        return None, f"no power sensor could be read{trouble}"
    return None, NO_SENSOR
