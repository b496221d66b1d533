"""``hwlab farm schedule``: a systemd timer and service (and a cron line) that run a plan every night.

Nothing is installed: the text is printed for the user to read and install (the README shows how).
Every path is quoted for the syntax it lands in (systemd's, or the shell's for cron), so a plan in a
folder with spaces or odd characters runs as it is, and nothing in it becomes a command.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from hwlab.errors import InvalidRequest

TIME = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


@dataclass(frozen=True)
class Schedule:
    service: str
    timer: str
    cron: str
    unit: str


def _systemd_word(text: str) -> str:
    """One word of an ExecStart= line: double-quoted, with systemd's escapes ("%" is a specifier)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{escaped}"'


def _systemd_value(text: str) -> str:
    """A whole-line value (WorkingDirectory=, Description=): taken as written, "%" escaped; never quoted
    (systemd would read the quotes as part of the path)."""
    return text.replace("%", "%%")


def _hwlab_argv(plan: Path, db: str | None, extra: list[str]) -> list[str]:
    hwlab = Path(sys.executable).with_name("hwlab")
    argv = [str(hwlab) if hwlab.exists() else sys.executable, *([] if hwlab.exists() else ["-m", "hwlab.cli"])]
    argv += ["farm", "run", "--plan", str(plan)]
    if db:
        argv += ["--db", db]
    return argv + extra


def schedule(plan: Path, at: str = "02:00", db: str | None = None, extra: list[str] | None = None) -> Schedule:
    """The unit files and cron line that run ``plan`` every day at ``at`` (HH:MM, local time)."""
    found = TIME.fullmatch(at)
    if not found:
        raise InvalidRequest(f"--at {at!r} is not a time of day", hint="give HH:MM, e.g. --at 02:30")
    plan = plan.resolve()
    if any(c in str(plan) for c in "\n\r"):
        raise InvalidRequest(f"the plan's path {str(plan)!r} holds a line break", hint="move the plan elsewhere")
    argv = _hwlab_argv(plan, db, extra or [])
    unit = "hwlab-farm-" + re.sub(r"[^A-Za-z0-9_-]+", "-", plan.stem).strip("-")
    service = "\n".join([
        "[Unit]",
        f"Description=hwlab farm: nightly run of {_systemd_value(plan.name)}",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=oneshot",
        f"WorkingDirectory={_systemd_value(str(plan.parent))}",
        "ExecStart=" + " ".join(_systemd_word(a) for a in argv),
        "# SIGTERM stops the runners on the devices and keeps every finished result; resume with --resume RUN",
        "KillMode=mixed",
        "TimeoutStopSec=60",
        "",
    ])  # fmt: skip
    timer = "\n".join([
        "[Unit]",
        f"Description=hwlab farm: run {_systemd_value(plan.name)} every night at {at}",
        "",
        "[Timer]",
        f"OnCalendar=*-*-* {at}:00",
        "Persistent=true",
        f"Unit={unit}.service",
        "",
        "[Install]",
        "WantedBy=timers.target",
        "",
    ])  # fmt: skip
    log = plan.parent / "farm" / "cron.log"
    command = f"cd {shlex.quote(str(plan.parent))} && {shlex.join(argv)} >> {shlex.quote(str(log))} 2>&1"
    cron = f"{int(found[2])} {int(found[1])} * * * {command.replace('%', chr(92) + '%')}"
    return Schedule(service, timer, cron, unit)
