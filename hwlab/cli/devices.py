"""`hwlab devices` and `hwlab doctor`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hwlab.cli.common import (
    add_backend_arg,
    add_device_args,
    add_folder_args,
    add_inventory_arg,
    add_json_arg,
    add_measuring_args,
    command,
    measure_settings,
    measuring,
    number,
    print_json,
    single_backend,
    whole,
)
from hwlab.cli.console import stderr_console
from hwlab.cli.profile import PhaseBars, _progress_bar
from hwlab.doctor import diagnose
from hwlab.errors import HostKeyNotTrusted, InvalidRequest
from hwlab.inventory import get_device, inventory_dir, load_inventory
from hwlab.noise import NoisePlan, measure_noise
from hwlab.profile import ProfileRequest
from hwlab.transport import connect


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = command(
        sub,
        "devices",
        help="list the device inventory; trust an SSH device's host key",
        description="List the devices of the inventory (`hwlab devices`), or trust the host key of an SSH"
        " device after checking its fingerprint (`hwlab devices trust NAME`).",
        examples=["hwlab devices", "hwlab devices --inventory lab/devices --json", "hwlab devices trust rk3399"],
    )
    add_device_args(p, device=False)
    add_json_arg(p)
    p.set_defaults(handler=cmd_devices)
    dsub = p.add_subparsers(dest="devices_command", metavar="ACTION", help="trust: add an SSH host key (none: list)")
    trust = command(
        dsub,
        "trust",
        help="add an SSH device's host key to known_hosts after showing its fingerprint",
        description="Fetch the host key the device offers, show its SHA256 fingerprint and, once you confirm"
        " (compare it with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the device), append it to the"
        " device's known_hosts file.",
        examples=["hwlab devices trust rk3399", "hwlab devices trust rk3399 --fingerprint SHA256:..."],
    )
    trust.add_argument("name", help="device name from the inventory")
    add_inventory_arg(trust, suppress=True)  # `hwlab devices --inventory DIR trust NAME` keeps DIR
    trust.add_argument("--yes", action="store_true", help="do not ask: trust the key shown")
    trust.add_argument("--fingerprint", help="trust only if the key has this fingerprint (SHA256:...)")
    add_json_arg(trust, suppress=True)
    trust.set_defaults(handler=cmd_trust)

    p = command(
        sub,
        "doctor",
        help="describe a device: CPU, clusters, governor, thermal, memory, runtimes; what it lacks",
        description="Describe a device (the runner's `facts`, or its shell's on a device with benchmark_model"
        " and no Python) and list what it lacks for profiling, each with the fix.",
        examples=[
            "hwlab doctor --device local",
            "hwlab doctor --device rk3399 --json",
            "hwlab doctor --device local --noise --models 100 --gap 600",
            "hwlab doctor --device local --int8",
        ],
    )
    add_device_args(p)
    add_json_arg(p, "print the facts and findings (or the noise report) as JSON")
    noise = p.add_argument_group("noise floor")
    noise.add_argument(
        "--noise",
        action="store_true",
        help="measure reference models in two runs --gap apart and report how well they agree, raw and"
        " drift-corrected (stored with the device; predictor evaluations print it as their ceiling)",
    )
    d = NoisePlan()
    noise.add_argument("--models", type=whole(2, 100_000), default=d.models, help="reference whole models (--noise)")
    noise.add_argument(
        "--gap", type=number(0.0), default=d.gap_s, metavar="SECONDS", help="seconds between the two runs (--noise)"
    )
    noise.add_argument("--seed", type=whole(0), default=d.seed, help="which reference models (--noise)")
    p.add_argument(
        "--int8", action="store_true",
        help="measure reference layers at fp32 and static int8 (onnxruntime) and report int8/fp32 beside the"
        " CPU's int8 features: whether int8 can pay off on this device",
    )  # fmt: skip
    add_backend_arg(p, several=False)
    add_folder_args(p, "tables")
    add_measuring_args(p, stop_rules=True)
    p.set_defaults(handler=cmd_doctor)


def cmd_devices(args: argparse.Namespace) -> int:
    devices = load_inventory(args.inventory)
    if args.json:
        print_json([{**d.__dict__, "address": d.address} for d in devices.values()])
        return 0
    table = Table(title=f"devices in {escape(str(inventory_dir(args.inventory)))}")
    for col in ("name", "transport", "address", "soc", "runtimes", "threads", "core mask", "note"):
        table.add_column(col)
    for d in devices.values():
        note = (
            "[yellow]example: edit before use[/]"
            if d.example
            else ("emulated" if d.emulated else escape(d.description))
        )
        table.add_row(
            d.name,
            d.transport,
            escape(d.address),
            escape(d.soc),
            ",".join(d.runtimes),
            str(d.threads),
            ",".join(map(str, d.core_mask)) if d.core_mask else "all",
            note,
        )
    Console().print(table)
    return 0


def cmd_trust(args: argparse.Namespace) -> int:
    from hwlab.transport import ssh_target
    from hwlab.transport.ssh import fetch_host_key, fingerprint, known_hosts_name, trust_host_key

    device = get_device(args.name, args.inventory)
    if device.transport != "ssh":
        raise InvalidRequest(
            f"device {device.name!r} uses {device.transport}, not ssh", hint="only SSH devices have host keys"
        )
    target = ssh_target(device)
    key = fetch_host_key(target, timeout=float(device.connect_timeout_s))
    shown = fingerprint(key)
    console = stderr_console() if args.json else Console()
    name = escape(known_hosts_name(target.hostname, target.port))
    console.print(f"{name} offers a {key.get_name()} key: [bold]{shown}[/]")
    if args.fingerprint and args.fingerprint != shown:
        raise HostKeyNotTrusted(
            f"the key's fingerprint is {shown}, not {args.fingerprint}: refusing to trust it",
            hint="check that you reach the right device; its key may have been replaced",
        )
    if not (args.yes or args.fingerprint) and _confirm(console, "trust it? [y/N] ") not in ("y", "yes"):
        console.print("not trusted")
        return 1
    trust_host_key(target, key)
    if args.json:
        print_json({"device": device.name, "fingerprint": shown, "known_hosts": target.known_hosts})
    else:
        console.print(f"added to {escape(target.known_hosts)}")
    return 0


def _confirm(console: Console, question: str) -> str:
    """The user's answer, lower-cased; an error, not an EOFError, when nobody can answer."""
    if not sys.stdin.isatty():
        raise InvalidRequest(
            "confirming a host key needs a terminal (stdin is not one)",
            hint="pass --fingerprint SHA256:... (checked) or --yes (trust the key shown)",
        )
    try:
        return console.input(question).strip().lower()
    except EOFError:
        return ""


def cmd_doctor(args: argparse.Namespace) -> int:
    if args.noise:
        return cmd_noise(args)
    if args.int8:
        return cmd_int8(args)
    device = get_device(args.device, args.inventory)
    transport = connect(device)
    try:
        facts, findings = diagnose(device, transport)
    finally:
        transport.close()
    if args.json:
        print_json({"facts": facts, "findings": [f.__dict__ for f in findings]})
    else:
        console = Console()
        if facts is not None:
            print_facts(console, device.name, facts)
        style = {"ok": "green", "warn": "yellow", "missing": "bold red"}
        for f in findings:
            fix = f"\n         fix: {escape(f.fix)}" if f.fix else ""
            console.print(f"[{style[f.level]}]{f.level:>7}[/] {escape(f.what)}{fix}")
    return 1 if any(f.level == "missing" for f in findings) else 0


def cmd_noise(args: argparse.Namespace) -> int:
    device = get_device(args.device, args.inventory)
    backend = single_backend(args)
    plan = NoisePlan(models=args.models, gap_s=args.gap, seed=args.seed, settings=measure_settings(args))
    base = ProfileRequest.of(device, backend, measuring(args))
    console = stderr_console() if args.json else Console()
    console.print(
        f"noise floor of [bold]{escape(device.name)}[/] ({backend}): {plan.models} models, two runs"
        f" {plan.gap_s:g} s apart"
    )
    with _progress_bar(console) as bar:
        report = measure_noise(device, backend, plan, args.tables_dir, base=base,
                               progress_for=lambda run: PhaseBars(bar, run))  # fmt: skip
    if args.json:
        print_json(report.to_json())
        return 0
    view = Table(title=escape(report.summary()), show_header=True)
    for col in ("", "within ±5%", "within ±10%", "median |diff|"):
        view.add_column(col)
    for name, a in (("raw", report.raw), ("raw / common factor", report.raw_after_common),
                    ("corrected", report.corrected)):  # fmt: skip
        view.add_row(name, f"{a.within_5:.0%}", f"{a.within_10:.0%}", f"{a.median_abs:.1%}")
    console.print(view)
    console.print(f"raw common factor of the second run: {report.raw_common_factor:.3f}")
    spread = "-" if not report.state_factors else f"{report.state_spread:.1%}"
    console.print(f"machine state against the reference (every group, both runs): {_floats(report.state_factors)};"
                  f" spread {spread}")  # fmt: skip
    steal = [f"{s:.1%}" if s is not None else "unreadable" for s in report.steal]
    console.print(f"CPU steal during each run: {', '.join(steal)}")
    console.print(
        f"hottest zone: {_floats(report.temp_c, ' °C')}; lowest mean frequency: {_floats(report.freq_mhz, ' MHz')}"
    )
    return 0


def cmd_int8(args: argparse.Namespace) -> int:
    from hwlab.quant.int8_check import BACKEND, measure_int8_ratio

    device = get_device(args.device, args.inventory)
    console = stderr_console() if args.json else Console()
    console.print(f"int8 against fp32 on [bold]{escape(device.name)}[/] ({BACKEND}, static QDQ int8)")
    with _progress_bar(console) as bar:
        check = measure_int8_ratio(device, args.tables_dir, ProfileRequest.of(device, BACKEND, measuring(args),
                                   settings=measure_settings(args)), PhaseBars(bar, BACKEND))  # fmt: skip
    if args.json:
        print_json(check.to_json())
        return 0
    features = check.features
    said = "unreadable" if features is None else ", ".join(features) or "none (int8 runs on plain SIMD)"
    console.print(f"int8 features of the CPU: {escape(said)}")
    view = Table(title="measured int8/fp32 (below 1: int8 pays)")
    for col in ("layer", "fp32 ms", "int8 ms", "int8/fp32"):
        view.add_column(col)
    for layer in check.layers:
        ratio = "-" if layer.ratio is None else f"{layer.ratio:.2f}" + ("" if layer.ratio < 1 else " (does not pay)")
        view.add_row(escape(layer.key), _ms(layer.fp32_ms), _ms(layer.int8_ms), escape(layer.error or ratio))
    console.print(view)
    console.print(f"table: {escape(str(check.table))}")
    return 1 if any(layer.error for layer in check.layers) else 0


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _floats(values: list[float], unit: str = "") -> str:
    return ", ".join(f"{v:.3g}{unit}" for v in values) if values else "unreadable"


def _fmt(value: Any, unit: str = "") -> str:
    """What the device said, escaped (its text is the device's, not markup)."""
    return "[dim]unreadable[/]" if value in (None, {}, []) else escape(f"{value}{unit}")


def print_facts(console: Console, name: str, facts: dict[str, Any]) -> None:
    table = Table(title=f"device {name}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("host", _fmt(facts.get("hostname")))
    table.add_row("system", escape(f"{facts.get('os')} {facts.get('kernel')}"))
    table.add_row("architecture", _fmt(facts.get("machine")))
    table.add_row("CPU model", _fmt(facts.get("cpu_model")))
    features = facts.get("int8_features")
    if features is not None:
        table.add_row("int8 features", escape(", ".join(features)) or "none (int8 on plain SIMD: hwlab doctor --int8)")
    table.add_row("cores", f"{facts.get('cpu_count')} (online: {_ranges(facts.get('online_cpus') or [])})")
    clusters = facts.get("clusters") or []
    table.add_row(
        "clusters",
        "\n".join(f"{len(c['cpus'])} × {c['max_khz'] / 1e6:.2f} GHz: CPUs {_ranges(c['cpus'])}" for c in clusters)
        or "[dim]no cpufreq in sysfs (a VM or container?)[/]",
    )
    governors = facts.get("governors") or {}
    table.add_row("governor", _fmt(", ".join(sorted(set(governors.values())))) if governors else _fmt(None))
    zones = facts.get("thermal_c") or {}
    table.add_row(
        "thermal zones",
        "\n".join(
            escape(f"{z}: {t:.1f} °C" if isinstance(t, int | float) else f"{z}: unreadable") for z, t in zones.items()
        )
        or "[dim]none readable[/]",
    )
    total, avail = facts.get("memory_total_mib"), facts.get("memory_available_mib")
    table.add_row("memory", f"{total} MiB total, {avail} MiB available" if total else _fmt(None))
    table.add_row("affinity", _ranges(facts.get("affinity") or []))
    table.add_row("python", _fmt(facts.get("python")))
    for runtime, found in (facts.get("runtimes") or {}).items():
        shown = escape(f"{found.get('version')} ({found.get('module')})") if found else "[yellow]not installed[/]"
        table.add_row(escape(runtime), shown)
    console.print(table)


def _ranges(cpus: list[int]) -> str:
    """[0, 1, 2, 3, 6] -> '0-3,6'."""
    spans: list[list[int]] = []
    for cpu in sorted(cpus):
        if spans and spans[-1][1] + 1 == cpu:
            spans[-1][1] = cpu
        else:
            spans.append([cpu, cpu])
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in spans) or "-"
