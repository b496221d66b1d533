"""`hwlab farm`: nightly runs of a plan over the inventory, device health, alerts, reports, Dask workers."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from hwlab.cli.common import add_inventory_arg, add_json_arg, command, number, print_json, whole
from hwlab.cli.console import stderr_console
from hwlab.farm.db import HEALTHS, History, database_url

PLAN_DEFAULT = "farm.yaml"


def _add_plan_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plan", type=Path, default=Path(PLAN_DEFAULT), help="the farm plan (see the README)")
    p.add_argument(
        "--db", metavar="URL", help="history database: a SQLite file path, or a SQLAlchemy URL such as"
        " postgresql+psycopg://user@host/farm (default: farm.db beside the plan)",
    )  # fmt: skip


def _history(args: argparse.Namespace) -> History:
    plan = args.plan.resolve() if args.plan else None
    return History.open(database_url(args.db, plan))


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = command(
        sub, "farm",
        help="nightly runs over the inventory: health, leases, history, regressions, reports, Dask workers",
        description="Run a farm plan every night over its devices and keep the history: each device's health"
        " check, its reference models measured, every series judged against its own past nights (Mann-Whitney U"
        " and a change beyond max(5%, k x the series' night-to-night noise), confirmed by a second measurement),"
        " alerts, reports.",
        examples=["hwlab farm run --plan farm.yaml", "hwlab farm report --out farm-report --junit farm.xml",
                  "hwlab farm health rk3399 --set good", "hwlab farm schedule --plan farm.yaml --at 02:30"],
    )  # fmt: skip
    fsub = p.add_subparsers(dest="farm_command", metavar="ACTION", required=True, help="what to do")

    run = command(
        fsub, "run", help="run (or resume) one night of the plan",
        description="Run one night: for each device of the plan, its lease, its health check (reachable,"
        " runtimes present, a golden model against its history), then the plan's models on each backend; flagged"
        " series are measured again before an alert is raised. Every result is kept as it arrives: a killed run"
        " resumes with --resume RUN and measures only what it lacks.",
        examples=["hwlab farm run", "hwlab farm run --plan lab/farm.yaml --db postgresql+psycopg://farm@db/farm",
                  "hwlab farm run --resume 20261207T020000Z-1a2b", "hwlab farm run --scheduler tcp://farm-host:8786"],
    )  # fmt: skip
    _add_plan_db(run)
    add_inventory_arg(run)
    run.add_argument("--resume", metavar="RUN", help="finish this run: measure only what it lacks")
    run.add_argument("--scheduler", metavar="ADDRESS", help="a Dask scheduler whose workers have the devices")
    run.add_argument("--lock-wait", type=number(0.0), default=0.0, metavar="SECONDS",
                     help="wait this long for a device held by another hwlab process")  # fmt: skip
    run.add_argument("--fail-on-regression", action="store_true", help="exit 3 when this run raised a regression")
    add_json_arg(run)
    run.set_defaults(handler=cmd_run)

    health = command(
        fsub, "health", help="show devices' health; set one (good, maintenance, retired...)",
        description="Show each device's health (good / unknown / bad / maintenance / retired, as LAVA has them)"
        " and state, or set one: a device whose health check failed is skipped every night until it is set good.",
        examples=["hwlab farm health", "hwlab farm health rk3399 --set good --reason 'new SD card'"],
    )  # fmt: skip
    _add_plan_db(health)
    health.add_argument("device", nargs="?", help="the device to show or set")
    health.add_argument("--set", choices=HEALTHS, help="set the device's health")
    health.add_argument("--reason", default="set by hand", help="why (kept in the device's history)")
    add_json_arg(health)
    health.set_defaults(handler=cmd_health)

    ack = command(
        fsub, "ack", help="acknowledge an alert (a real change resets the series' baseline)",
        description="Acknowledge an alert. --real: the change is real and stays (a new runtime, a new kernel):"
        " the series' baseline starts again at the night it began. Without it the alert is only marked seen.",
        examples=["hwlab farm ack 12 --real --note 'onnxruntime 1.20 upgrade'", "hwlab farm ack 13 --note 'known'"],
    )  # fmt: skip
    _add_plan_db(ack)
    ack.add_argument("alert", type=whole(1), help="the alert's number (from the report)")
    ack.add_argument("--real", action="store_true", help="the change is real: start the baseline at its night")
    ack.add_argument("--note", default="", help="why")
    ack.add_argument("--by", default="", help="who (default: the user name)")
    ack.set_defaults(handler=cmd_ack)

    report = command(
        fsub, "report", help="write the HTML report (one PNG per series), JSON or JUnit XML",
        description="Write a static HTML report (no server needed) with the alerts, the devices' health and one"
        " plot per series (history, noise band, step markers) with links to the raw samples; --json for scripts,"
        " --junit for CI systems (one testcase per series; an unacknowledged regression fails it).",
        examples=["hwlab farm report --out farm-report", "hwlab farm report --junit farm.xml --fail-on-regression",
                  "hwlab farm report --json"],
    )  # fmt: skip
    _add_plan_db(report)
    report.add_argument("--out", type=Path, help="folder of the HTML report (default: farm/report beside the plan)")
    report.add_argument("--junit", type=Path, metavar="FILE", help="also write JUnit XML here")
    report.add_argument("--fail-on-regression", action="store_true",
                        help="exit 3 when an unacknowledged regression exists (default: exit 0)")  # fmt: skip
    add_json_arg(report, "print the report as JSON (no HTML is written)")
    report.set_defaults(handler=cmd_report)

    sched = command(
        fsub, "schedule", help="print a systemd timer and service, and a cron line, for the plan",
        description="Print a systemd service and timer (and a cron line) that run `hwlab farm run` on the plan"
        " every night; nothing is installed (the README shows how).",
        examples=["hwlab farm schedule --plan farm.yaml --at 02:30"],
    )  # fmt: skip
    _add_plan_db(sched)
    sched.add_argument("--at", default="02:00", help="time of day, HH:MM (local)")
    sched.set_defaults(handler=cmd_schedule)

    worker = command(
        fsub, "worker", help="serve a Dask scheduler as a worker for the devices attached to this host",
        description="Start a Dask distributed worker that advertises each --device as the resource"
        " device-NAME=1, so `hwlab farm run --scheduler` sends that device's night here. Runs until stopped.",
        examples=["hwlab farm worker --scheduler tcp://farm-host:8786 --device rk3399 --device pixel7"],
    )  # fmt: skip
    worker.add_argument("--scheduler", required=True, metavar="ADDRESS", help="the scheduler, tcp://HOST:PORT")
    worker.add_argument("--device", action="append", default=[], help="a device of this host (repeatable)")
    worker.add_argument("--name", help="the worker's name (default: Dask's)")
    add_inventory_arg(worker)
    worker.set_defaults(handler=cmd_worker)


def cmd_run(args: argparse.Namespace) -> int:
    from hwlab.farm.run import farm_run

    err = stderr_console()
    summary = farm_run(args.plan, db=args.db, inventory=args.inventory, resume=args.resume, scheduler=args.scheduler,
                       lease_wait_s=args.lock_wait, log=lambda line: err.print(escape(line)))  # fmt: skip
    if args.json:
        print_json(summary.to_json())
    else:
        table = Table("device", "status", "results", "errors", "flagged", "alerts", "attempts", "note")
        for o in summary.outcomes:
            table.add_row(o.device, o.status, str(o.results), str(o.errors), str(len(o.flagged)),
                          ", ".join(f"#{a}" for a in o.alerts), str(o.attempts), escape(o.message))  # fmt: skip
        err.print(table)
        err.print(f"run {summary.run_id}: {len(summary.alerts)} alert(s); `hwlab farm report` shows them")
    regressions = [a for a in summary.alerts if a["kind"] == "regression"]
    return 3 if args.fail_on_regression and regressions else 0


def cmd_health(args: argparse.Namespace) -> int:
    history = _history(args)
    if args.set:
        if not args.device:
            from hwlab.errors import InvalidRequest

            raise InvalidRequest("--set needs a device", hint="hwlab farm health DEVICE --set good")
        history.set_health(args.device, args.set, args.reason)
    rows = [history.device(args.device)] if args.device else history.devices()
    if args.json:
        print_json([{**r, "events": history.health_events(r["name"])} for r in rows])
        return 0
    table = Table("device", "health", "state", "why", "since", "infrastructure errors")
    for r in rows:
        why = escape(r["health_reason"] or "")
        table.add_row(r["name"], r["health"], r["state"], why, r["health_changed_at"] or "", str(r["infra_errors"]))
    stderr_console().print(table)
    return 0


def cmd_ack(args: argparse.Namespace) -> int:
    import getpass

    alert = _history(args).acknowledge(args.alert, args.by or getpass.getuser(), args.note, real=args.real)
    what = "the baseline starts again at its night" if args.real else "marked seen"
    stderr_console().print(f"alert #{alert['id']} ({alert['kind']}, {alert['change']:+.1%}) acknowledged: {what}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from hwlab.farm.report import gather, junit_xml, write_report

    history = _history(args)
    thresholds = None
    if args.plan.exists():
        from hwlab.farm.plan import load_plan

        thresholds = load_plan(args.plan).thresholds
    report = gather(history, thresholds) if thresholds else gather(history)
    err = stderr_console()
    if args.junit:
        args.junit.parent.mkdir(parents=True, exist_ok=True)
        args.junit.write_text(junit_xml(report), encoding="utf-8")
        err.print(f"JUnit XML: {args.junit}")
    if args.json:
        print_json(report.to_json())
    else:
        out = args.out or args.plan.resolve().parent / "farm" / "report"
        index = write_report(report, out)
        err.print(f"report: {index} ({len(report.series)} series, {len(report.alerts)} alert(s), "
                  f"{len(report.regressions)} unacknowledged regression(s))")  # fmt: skip
    return 3 if args.fail_on_regression and report.regressions else 0


def cmd_schedule(args: argparse.Namespace) -> int:
    from hwlab.farm.plan import load_plan
    from hwlab.farm.schedule import schedule

    plan = load_plan(args.plan)
    s = schedule(plan.path, args.at, args.db)
    print(f"# /etc/systemd/system/{s.unit}.service\n{s.service}")
    print(f"# /etc/systemd/system/{s.unit}.timer\n{s.timer}")
    print(f"# or one crontab line (crontab -e):\n{s.cron}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from hwlab.farm.scale import run_worker

    stderr_console().print(f"worker for {', '.join(args.device) or 'no device'} on {args.scheduler}")
    run_worker(args.scheduler, args.device, args.inventory, args.name)
    return 0
