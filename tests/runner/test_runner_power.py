"""Power sensors against fake sysfs trees in the kernel's documented units, and the sampler on fake time."""

from __future__ import annotations

import os

import pytest
from hwlab_runner import energy, power
from hwlab_runner.energy import PowerPlan, PowerSampler, Window, counter_power_w, mean_power_w, power_result
from hwlab_runner.power import NO_SENSOR, Sensor, choose, discover, survey


def write(root, relative: str, text: str) -> None:
    path = os.path.join(str(root), relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def by_name(root) -> dict[str, Sensor]:
    return {s.name: s for s in discover(str(root))}


# --- each kind, with the units the kernel documents ---------------------------------------------------------


def test_hwmon_power_input_is_microwatts(tmp_path):
    write(tmp_path, "sys/class/hwmon/hwmon0/name", "ina226\n")
    write(tmp_path, "sys/class/hwmon/hwmon0/power1_input", "2515000\n")  # µW
    write(tmp_path, "sys/class/hwmon/hwmon0/in1_input", "5030\n")  # a chip with power too: pairs are not used
    write(tmp_path, "sys/class/hwmon/hwmon0/curr1_input", "500\n")
    write(tmp_path, "sys/class/hwmon/hwmon1/name", "acpi_power_meter\n")
    write(tmp_path, "sys/class/hwmon/hwmon1/power1_average", "187000000\n")  # µW, averaged
    write(tmp_path, "sys/class/hwmon/hwmon2/name", "cpu_thermal\n")
    write(tmp_path, "sys/class/hwmon/hwmon2/temp1_input", "41000\n")  # no power: not a sensor
    sensors = by_name(tmp_path)
    assert list(sensors) == ["hwmon:ina226:power1", "hwmon:acpi_power_meter:power1"]
    assert sensors["hwmon:ina226:power1"].read_w() == 2.515
    assert sensors["hwmon:acpi_power_meter:power1"].read_w() == 187.0


def test_hwmon_voltage_times_current_pairs(tmp_path):
    hw = "sys/class/hwmon/hwmon3"
    write(tmp_path, f"{hw}/name", "pmic\n")
    write(tmp_path, f"{hw}/in1_input", "5000\n")  # mV
    write(tmp_path, f"{hw}/curr1_input", "400\n")  # mA
    write(tmp_path, f"{hw}/in2_input", "1800\n")  # no curr2: no pair
    write(tmp_path, f"{hw}/curr3_input", "10\n")  # no in3: no pair
    write(tmp_path, f"{hw}/in4_input", "3300\n")
    write(tmp_path, f"{hw}/curr4_input", "250\n")
    write(tmp_path, f"{hw}/curr4_label", "vsys\n")
    sensors = by_name(tmp_path)
    assert list(sensors) == ["hwmon:pmic:curr1", "hwmon:pmic:vsys"]
    assert sensors["hwmon:pmic:curr1"].read_w() == 2.0
    assert sensors["hwmon:pmic:vsys"].read_w() == 0.825


@pytest.fixture
def jetson_hwmon(tmp_path):
    """Mainline ina3221 hwmon driver as on JetPack 5 (Orin): labels, mV, mA, a disabled channel, shunt µV."""
    hw = "sys/class/hwmon/hwmon4"
    write(tmp_path, f"{hw}/name", "ina3221\n")
    for n, (label, mv, ma) in enumerate(
        [("VDD_CPU_GPU_CV", 5072, 296), ("VDD_IN", 5080, 1240), ("VDD_SOC", 5064, 480)], 1
    ):
        write(tmp_path, f"{hw}/in{n}_label", label + "\n")
        write(tmp_path, f"{hw}/in{n}_input", f"{mv}\n")
        write(tmp_path, f"{hw}/curr{n}_input", f"{ma}\n")
        write(tmp_path, f"{hw}/in{n}_enable", "1\n")
        write(tmp_path, f"{hw}/in{n + 3}_input", "2960\n")  # shunt voltage in µV: never a rail
    write(tmp_path, f"{hw}/in3_enable", "0\n")
    write(tmp_path, f"{hw}/in7_label", "sum of shunt voltages\n")
    write(tmp_path, f"{hw}/in7_input", "8880\n")
    return tmp_path


def test_ina3221_hwmon_rails(jetson_hwmon):
    sensors = by_name(jetson_hwmon)
    # The board's input rail comes first (the "auto" choice); the disabled channel is left out.
    assert list(sensors) == ["ina3221:VDD_IN", "ina3221:VDD_CPU_GPU_CV"]
    assert sensors["ina3221:VDD_IN"].read_w() == 5080 * 1240 / 1e6 == 6.2992
    assert sensors["ina3221:VDD_CPU_GPU_CV"].kind == "ina3221"
    assert choose(str(jetson_hwmon))[0].name == "ina3221:VDD_IN"


def test_ina3221_legacy_iio_rails(tmp_path):
    """NVIDIA's ina3221x IIO driver (Nano, TX2): rail_name_N, in_powerN_input in mW or mV × mA."""
    dev = "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0"
    write(tmp_path, f"{dev}/rail_name_0", "POM_5V_GPU\n")
    write(tmp_path, f"{dev}/in_voltage0_input", "5000\n")  # mV
    write(tmp_path, f"{dev}/in_current0_input", "120\n")  # mA
    write(tmp_path, f"{dev}/rail_name_1", "POM_5V_IN\n")
    write(tmp_path, f"{dev}/in_power1_input", "3456\n")  # mW
    write(tmp_path, f"{dev}/in_voltage1_input", "5000\n")
    write(tmp_path, f"{dev}/in_current1_input", "691\n")
    sensors = by_name(tmp_path)
    assert list(sensors) == ["ina3221:POM_5V_IN", "ina3221:POM_5V_GPU"]
    assert sensors["ina3221:POM_5V_IN"].read_w() == 3.456
    assert sensors["ina3221:POM_5V_GPU"].read_w() == 0.6


@pytest.fixture
def phone(tmp_path):
    ps = "sys/class/power_supply"
    write(tmp_path, f"{ps}/usb/type", "USB\n")
    write(tmp_path, f"{ps}/usb/voltage_now", "5000000\n")
    write(tmp_path, f"{ps}/usb/current_now", "0\n")
    write(tmp_path, f"{ps}/battery/type", "Battery\n")
    write(tmp_path, f"{ps}/battery/status", "Discharging\n")
    write(tmp_path, f"{ps}/battery/current_now", "-1250000\n")  # µA, negative: discharging (kernel ABI)
    write(tmp_path, f"{ps}/battery/voltage_now", "3850000\n")  # µV
    write(tmp_path, f"{ps}/ac/type", "Mains\n")
    write(tmp_path, f"{ps}/ac/online", "0\n")  # no current: not a sensor
    write(tmp_path, f"{ps}/hid-mouse-battery/type", "Battery\n")
    write(tmp_path, f"{ps}/hid-mouse-battery/scope", "Device\n")  # a peripheral's battery
    write(tmp_path, f"{ps}/hid-mouse-battery/current_now", "-1000\n")
    write(tmp_path, f"{ps}/hid-mouse-battery/voltage_now", "3700000\n")
    return tmp_path


def test_battery_power_supply(phone):
    sensors = by_name(phone)
    assert list(sensors) == ["power_supply:battery", "power_supply:usb"]
    battery = sensors["power_supply:battery"]
    assert battery.read_w() == 1.25 * 3.85 == 4.8125
    assert battery.details() == {"type": "Battery", "status": "Discharging", "current_sign": "negative"}
    assert choose(str(phone), ["battery"])[0] is not None
    assert choose(str(phone), ["battery"])[0].name == "power_supply:battery"


def test_battery_with_the_other_sign_and_power_now(tmp_path):
    write(tmp_path, "sys/class/power_supply/BAT0/type", "Battery\n")
    write(tmp_path, "sys/class/power_supply/BAT0/current_now", "1250000\n")  # a driver with positive discharge
    write(tmp_path, "sys/class/power_supply/BAT0/voltage_now", "3850000\n")
    write(tmp_path, "sys/class/power_supply/BAT1/type", "Battery\n")
    write(tmp_path, "sys/class/power_supply/BAT1/power_now", "7200000\n")  # µW, ACPI laptops
    sensors = by_name(tmp_path)
    assert sensors["power_supply:BAT0"].read_w() == 4.8125
    assert sensors["power_supply:BAT0"].details()["current_sign"] == "positive"
    assert sensors["power_supply:BAT1"].read_w() == 7.2
    assert "current_sign" not in sensors["power_supply:BAT1"].details()


@pytest.fixture
def rapl(tmp_path):
    base = "sys/class/powercap"
    write(tmp_path, f"{base}/intel-rapl/enabled", "1\n")  # the control type folder, not a zone
    for zone, name, uj in [
        ("intel-rapl:0", "package-0", 262143328840),
        ("intel-rapl:0:0", "core", 1000),
        ("intel-rapl:0:1", "dram", 2000),
        ("intel-rapl:1", "psys", 3000),
    ]:
        write(tmp_path, f"{base}/{zone}/name", name + "\n")
        write(tmp_path, f"{base}/{zone}/energy_uj", f"{uj}\n")
        write(tmp_path, f"{base}/{zone}/max_energy_range_uj", "262143328850\n")
    return tmp_path


def test_rapl_zones_and_names(rapl):
    sensors = by_name(rapl)
    assert list(sensors) == ["rapl:package-0", "rapl:psys", "rapl:package-0/core", "rapl:package-0/dram"]
    package = sensors["rapl:package-0"]
    assert package.counter and package.read_uj() == 262143328840
    assert package.wrap_uj() == 262143328850
    assert choose(str(rapl))[0].name == "rapl:package-0"
    assert choose(str(rapl), ["rapl"])[0].name == "rapl:package-0"


def test_rapl_wrap_around_gives_exact_watts(rapl):
    wrap = 262143328850
    # 0.5 s apart: 10 µJ to the wrap, then 4_999_990 µJ after it: 5 J in 0.5 s.
    readings = [(0.0, wrap - 10.0), (0.25, 2_499_990.0), (0.5, 4_999_990.0)]
    assert counter_power_w(readings, wrap) == (10.0, 1)
    # Without a known range the wrapped interval is left out, time and energy both.
    assert counter_power_w(readings, None) == (10.0, 0)


def test_permission_denied_rapl_says_how_to_fix_it(rapl, monkeypatch):
    real = power._read

    def root_only(path):
        if path.endswith("energy_uj"):
            raise PermissionError(13, "Permission denied", path)
        return real(path)

    monkeypatch.setattr(power, "_read", root_only)
    readable, problems = survey(str(rapl))
    assert readable == []
    sensor, reason = choose(str(rapl))
    assert sensor is None
    assert reason.startswith("no power sensor could be read; permission denied reading ")
    assert "intel-rapl:0/energy_uj" in reason and "root" in reason and "chmod a+r" in reason


def test_no_sensor_reason(tmp_path):
    assert choose(str(tmp_path)) == (None, NO_SENSOR)
    assert NO_SENSOR == "no power sensor found (looked for hwmon, ina3221, power_supply, powercap/rapl)"


def test_requested_names_in_preference_order(jetson_hwmon, phone, rapl):
    root = str(jetson_hwmon)  # the three fixtures share one tmp_path
    assert choose(root, ["rapl:package-0", "ina3221:VDD_IN"])[0].name == "rapl:package-0"
    assert choose(root, ["ina3221:NOPE", "battery"])[0].name == "power_supply:battery"
    assert choose(root, ["ina3221"])[0].name == "ina3221:VDD_IN"
    sensor, reason = choose(root, ["ina3221:NOPE"])
    assert sensor is None
    assert reason.startswith("none of the requested power sensors (ina3221:NOPE) is readable here (readable: ")


def test_repeated_names_are_numbered(tmp_path):
    for n in (0, 1):
        write(tmp_path, f"sys/class/hwmon/hwmon{n}/name", "ina226\n")
        write(tmp_path, f"sys/class/hwmon/hwmon{n}/power1_input", f"{n + 1}000000\n")
    sensors = by_name(tmp_path)
    assert [s for s in sensors] == ["hwmon:ina226:power1", "hwmon:ina226:power1#2"]
    assert sensors["hwmon:ina226:power1#2"].read_w() == 2.0


# --- the sampler, on fake time -------------------------------------------------------------------------------


class FakeTime:
    """A clock that moves only when the sampler waits; ``tick`` runs at each new time."""

    def __init__(self, end: float, tick=None) -> None:
        self.now = 0.0
        self.end = end
        self.tick = tick or (lambda now: None)

    def clock(self) -> float:
        return self.now

    def wait(self, timeout: float) -> bool:
        self.now += timeout
        self.tick(self.now)
        return self.now >= self.end


class Ramp(Sensor):
    """2 W plus 1 W per second of fake time."""

    kind = "fake"

    def __init__(self, time: FakeTime) -> None:
        super().__init__("fake:ramp", "a ramp", "/dev/null")
        self.time = time

    def read_w(self) -> float:
        return 2.0 + self.time.now


def test_sampler_averages_over_time_on_fake_time():
    t = FakeTime(end=0.125)  # 64 Hz: periods of 1/64 s are exact in binary
    sampler = PowerSampler(Ramp(t), sample_hz=64, clock=t.clock, wait=t.wait)
    sampler.start()
    # The fake wait ignores the stop request and ends the thread at t = 0.125, so this is exact:
    # readings at 0 (start), 1/64 ... 7/64 (thread) and 8/64 (stop).
    window = sampler.stop()
    assert window.mean_w == 2.0625  # a ramp's time-weighted mean is its midpoint
    assert (window.samples, window.duration_s, window.sample_hz, window.read_errors) == (9, 0.125, 64.0, 0)
    assert sampler.stop() is window  # stopping twice changes nothing


def test_sampler_with_a_wrapping_rapl_counter_on_fake_time(rapl):
    path = os.path.join(str(rapl), "sys/class/powercap/intel-rapl:0/energy_uj")
    wrap = 262143328850
    start_uj = wrap - 100_000

    def counter_at(now: float) -> None:  # a package drawing 5 W: 78125 µJ per 1/64 s
        with open(path, "w") as f:
            f.write(f"{int(start_uj + 5e6 * now) % wrap}\n")

    counter_at(0.0)
    t = FakeTime(end=0.125, tick=counter_at)
    sensor = next(s for s in discover(str(rapl)) if s.name == "rapl:package-0")
    sampler = PowerSampler(sensor, sample_hz=64, clock=t.clock, wait=t.wait)
    sampler.start()
    window = sampler.stop()
    assert window.mean_w == 5.0
    assert window.details == {"wraps": 1}
    assert window.samples == 9


def test_sampler_counts_failed_reads_and_keeps_the_rest():
    t = FakeTime(end=0.125)

    class Flaky(Ramp):
        def read_w(self) -> float:
            if 0.03 < self.time.now < 0.07:
                raise OSError(61, "No data available")
            return 4.0

    sampler = PowerSampler(Flaky(t), sample_hz=64, clock=t.clock, wait=t.wait)
    sampler.start()
    window = sampler.stop()
    assert (window.mean_w, window.samples, window.read_errors) == (4.0, 6, 3)


def test_sampler_with_the_real_clock_and_a_constant_sensor():
    """The real thread and clock: only the constant value is asserted, never a rate."""

    class Constant(Sensor):
        def read_w(self) -> float:
            return 3.25

    window = energy.idle_baseline(Constant("fake:c", "constant", "/dev/null"), idle_s=0.05, sample_hz=200)
    assert window.mean_w == 3.25
    assert window.samples >= 2


def test_mean_power_is_time_weighted():
    assert mean_power_w([(0.0, 2.0), (0.02, 4.0), (0.03, 4.0)]) == pytest.approx((0.02 * 3 + 0.01 * 4) / 0.03)
    assert mean_power_w([(1.0, 3.0)]) == 3.0
    assert mean_power_w([]) is None


# --- energy per inference ------------------------------------------------------------------------------------


def plan_with(idle_w: float | None) -> PowerPlan:
    sensor = Sensor("hwmon:ina226:power1", "hwmon ina226 power1_input (µW)", "/dev/null")
    sensor.kind = "hwmon"
    idle = Window(idle_w, 51, 1.0, 50.0) if idle_w is not None else None
    return PowerPlan(sensor, None, 50.0, idle)


def test_energy_per_inference_is_exact():
    window = Window(4.0, 11, 0.2, 50.0)
    out = power_result(plan_with(1.5), window, mean_us=250.0)
    assert out == {
        "sensor": "hwmon:ina226:power1",
        "kind": "hwmon",
        "description": "hwmon ina226 power1_input (µW)",
        "sample_hz": 50.0,
        "samples": 11,
        "window_s": 0.2,
        "read_errors": 0,
        "idle_w": 1.5,
        "active_w": 2.5,
        "power_w": 4.0,
        "energy_mj": 1.0,  # 4 W × 250 µs = 1000 µJ
        "dynamic_energy_mj": 0.625,  # 2.5 W × 250 µs
        "details": {},
    }


def test_energy_uses_the_rounded_numbers_of_the_line():
    out = power_result(plan_with(None), Window(2.123456789, 3, 0.1, 20.0), mean_us=12.345)
    assert out["power_w"] == 2.123457
    assert out["energy_mj"] == round(2.123457 * 12.345 / 1000, 9)
    assert out["idle_w"] is None and out["active_w"] is None and out["dynamic_energy_mj"] is None


def test_a_window_without_readings_has_a_reason_and_no_numbers():
    out = power_result(plan_with(1.0), Window(None, 0, 0.0, 0.0, 5, "OSError: gone"), mean_us=10.0)
    assert out["reason"] == "reading hwmon:ina226:power1 failed during the window: OSError: gone"
    assert "power_w" not in out and "energy_mj" not in out


def test_plan_without_a_sensor_or_with_no_idle(tmp_path):
    plan = energy.plan_power(str(tmp_path), None)
    assert plan.unavailable() == {"sensor": None, "reason": NO_SENSOR}
    write(tmp_path, "sys/class/hwmon/hwmon0/name", "ina226\n")
    write(tmp_path, "sys/class/hwmon/hwmon0/power1_input", "1000000\n")
    plan = energy.plan_power(str(tmp_path), None, idle_s=0.0)
    assert plan.sensor.name == "hwmon:ina226:power1" and plan.idle is None and plan.reason is None
