"""The CLI end to end on the local device, with every runtime installed here."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from gated_runner import gated_python

from hwlab.cli import build_parser, main
from hwlab.export import FORMAT_FOR_RUNTIME
from hwlab.measure.runtimes import host_can_export
from hwlab.space import get_space
from hwlab.tables import LookupTable, TableId

FAST = ["--min-time", "0.01", "--max-time", "0.2", "--min-count", "5", "--min-rounds", "3", "--max-rounds", "4"]
RUNTIME_MODULE = {"onnxruntime": "onnxruntime", "litert": "ai_edge_litert", "torch": "torch"}


def installed(backend: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(RUNTIME_MODULE[backend]) is not None and host_can_export(backend)


BACKENDS = [
    pytest.param(b, marks=pytest.mark.skipif(not installed(b), reason=f"{b} or its exporter is not installed"))
    for b in FORMAT_FOR_RUNTIME
]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("HWLAB_CACHE", str(tmp_path / "cache"))


def test_devices_lists_the_inventory(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run_cli(capsys, "devices", "--json")
    assert rc == 0
    names = {d["name"]: d for d in json.loads(out)}
    assert {"local", "rk3399", "pixel", "jetson"} <= set(names)
    assert names["rk3399"]["example"] is True
    rc, out, _ = run_cli(capsys, "devices")
    assert rc == 0 and "example: edit before use" in out and "rk3399" in out


def test_doctor_describes_the_local_device(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run_cli(capsys, "doctor", "--device", "local", "--json")
    report = json.loads(out)
    facts = report["facts"]
    assert rc == 0
    version = facts["runtimes"]["onnxruntime"]["version"]
    assert {"level": "ok", "what": f"onnxruntime {version} (onnxruntime)", "fix": ""} in report["findings"]
    assert facts["cpu_count"] == os.cpu_count()
    assert facts["python"] == ".".join(map(str, sys.version_info[:3]))
    assert facts["runtimes"]["onnxruntime"]["version"]
    rc, out, _ = run_cli(capsys, "doctor", "--device", "local")
    for label in ("CPU model", "clusters", "governor", "thermal zones", "memory", "python", "onnxruntime", "ok"):
        assert label in out


@pytest.mark.parametrize("backend", BACKENDS)
def test_profile_every_backend_then_resume(capsys: pytest.CaptureFixture[str], tmp_path: Path, backend: str) -> None:
    args = [
        "profile",
        "--device",
        "local",
        "--backend",
        backend,
        "--space",
        "generic",
        "--count",
        "3",
        "--seed",
        "5",
    ]
    args += [*FAST, "--tables-dir", str(tmp_path / "t"), "--json"]
    rc, out, _ = run_cli(capsys, *args)
    (report,) = json.loads(out)
    assert rc == 0, out
    assert report["measured"] == 3 and report["skipped"] == 0 and report["errors"] == []
    frame = pd.read_json(Path(report["table"]) / "ops.jsonl", lines=True)
    assert set(frame["key"]) == {s.key for s in get_space("generic", count=3, seed=5)}
    assert (frame["status"] == "ok").all() and (frame["median_ms"] > 0).all()
    assert (frame["runtime"] == backend).all() and (frame["threads"] == 1).all()
    assert (frame["device"] == "local").all() and not frame["emulated"].any()
    rc, out, _ = run_cli(capsys, *args)
    (again,) = json.loads(out)
    assert rc == 0 and again["measured"] == 0 and again["skipped"] == 3


def test_profile_spos_human_output_and_tables_commands(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    tables = str(tmp_path / "t")
    rc, out, err = run_cli(
        capsys,
        "profile",
        "--backend",
        "onnxruntime",
        "--space",
        "spos",
        "--input-size",
        "32",
        *FAST,
        "--tables-dir",
        tables,
    )
    assert rc == 0, err
    n = len(get_space("spos", input_size=32))
    assert "profile summary" in out and f"{n}" in out and "pandas.read_json" in out
    rc, out, _ = run_cli(capsys, "tables", "list", "--tables-dir", tables, "--json")
    (entry,) = json.loads(out)
    assert entry["table"] == "local/onnxruntime/spos" and entry["rows"] == n and entry["errors"] == 0
    rc, out, _ = run_cli(capsys, "tables", "show", "local/onnxruntime/spos", "--tables-dir", tables, "--json")
    shown = json.loads(out)
    assert len(shown["rows"]) == n
    medians = [r["median_ms"] for r in shown["rows"]]
    assert medians == sorted(medians)
    assert shown["meta"]["fixed"]["runtime"] == "onnxruntime"
    assert shown["meta"]["device_facts"]["cpu_count"] == os.cpu_count()
    assert shown["meta"]["space"] == {"name": "spos", "input_size": 32}
    rc, out, _ = run_cli(capsys, "tables", "show", "local/onnxruntime/spos", "--tables-dir", tables)
    assert rc == 0 and "spos_shufflenet" in out


def test_bad_requests_fail_with_a_fix(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for bad, said in ((["--backend", "tensorrt"], "unknown backend tensorrt: choose from onnxruntime, litert, torch"),
                      (["--backend", "all,torch"], "'all' already means every backend"),
                      (["--threads", "0"], "expected a whole number from 1 to 1024, not 0"),
                      (["--core-mask", "a,b"], "expected comma-separated CPU ids")):  # fmt: skip
        with pytest.raises(SystemExit) as exit_:
            main(["profile", *bad, "--tables-dir", str(tmp_path)])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and said in err, err
    rc, _, err = run_cli(capsys, "profile", "--space", "nope", "--tables-dir", str(tmp_path))
    assert rc == 1 and "unknown space 'nope'" in err
    rc, _, err = run_cli(capsys, "profile", "--space", "generic", "--input-size", "32", "--tables-dir", str(tmp_path))
    assert rc == 1 and "input_size" in err
    rc, _, err = run_cli(
        capsys, "profile", "--backend", "onnxruntime", "--space", "kernels", "--tables-dir", str(tmp_path)
    )
    assert rc == 1 and "no fusion rules measured for local/onnxruntime" in err and "hwlab predictors rules" in err
    rc, _, err = run_cli(capsys, "profile", "--device", "rk3399", "--tables-dir", str(tmp_path))
    assert rc == 1 and "is an example inventory" in err
    rc, _, err = run_cli(capsys, "tables", "show", "local/x", "--tables-dir", str(tmp_path))
    assert rc == 1 and "is not a table name" in err


def test_changed_conditions_are_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    base = [
        "profile",
        "--backend",
        "onnxruntime",
        "--space",
        "generic",
        "--count",
        "1",
        *FAST,
        "--tables-dir",
        str(tmp_path),
    ]
    assert run_cli(capsys, *base)[0] == 0
    rc, _, err = run_cli(capsys, *base, "--threads", "2")
    assert rc == 1 and "threads: table has 1, now 2" in err and "--table NAME" in err
    assert run_cli(capsys, *base, "--threads", "2", "--table", "generic-2t")[0] == 0


def test_emulated_device_is_labelled_in_every_row(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    inv = tmp_path / "inv"
    inv.mkdir()
    (inv / "qemu.yaml").write_text("name: qemu\ntransport: local\nemulated: true\n")
    rc, _, err = run_cli(
        capsys, "profile", "--device", "qemu", "--inventory", str(inv), "--backend", "onnxruntime",
        "--space", "generic", "--count", "2", *FAST, "--tables-dir", str(tmp_path / "t"),
    )  # fmt: skip
    assert rc == 0, err
    rows = list(LookupTable.at(tmp_path / "t", TableId("qemu", "onnxruntime", "generic")))
    assert len(rows) == 2 and all(r["emulated"] is True for r in rows)


def test_killed_profile_keeps_rows_and_resumes(tmp_path: Path) -> None:
    """SIGKILL after exactly three rows (the device's runner holds the fourth back): the finished rows stay,
    the rerun measures only the rest."""
    tables, gate = tmp_path / "t", tmp_path / "gate"
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    python = gated_python(tmp_path / "gated-python", gate, 3)
    (inventory / "host.yaml").write_text(f"name: host\ntransport: local\npython: {python}\n")
    argv = [sys.executable, "-m", "hwlab.cli", "profile", "--device", "host", "--inventory", str(inventory)]
    argv += ["--backend", "onnxruntime", "--space", "generic", "--count", "12", "--seed", "9", *FAST]
    argv += ["--tables-dir", str(tables), "--json"]
    env = {**os.environ, "HWLAB_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    rows_file = tables / "host" / "onnxruntime" / "generic" / "ops.jsonl"
    deadline = time.monotonic() + 300  # a bound for a broken run only: the gate holds the fourth row back
    while time.monotonic() < deadline and proc.poll() is None:
        if rows_file.exists() and len(rows_file.read_bytes().splitlines()) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    gate.touch()
    assert len(LookupTable(rows_file.parent).keys()) == 3
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    (report,) = json.loads(done.stdout)
    assert report["skipped"] == 3 and report["measured"] == 9
    assert LookupTable(rows_file.parent).keys() == {s.key for s in get_space("generic", count=12, seed=9)}


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this OS")
def test_core_mask_is_applied_and_recorded(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, out, _ = run_cli(
        capsys, "profile", "--backend", "onnxruntime", "--space", "generic", "--count", "2", *FAST,
        "--core-mask", "0", "--tables-dir", str(tmp_path), "--json",
    )  # fmt: skip
    assert rc == 0
    table = LookupTable(Path(json.loads(out)[0]["table"]))
    assert [r["core_mask"] for r in table] == ["0", "0"]
    assert table.meta()["fixed"]["core_mask"] == [0]


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    """Every (sub)command parser, with the words that reach it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _commands(sub, (*path, name))


def test_every_command_and_flag_is_described_and_every_help_shows_an_example() -> None:
    commands = dict(_commands(build_parser()))
    assert {("profile",), ("devices", "trust"), ("predictors", "fit"), ("tables", "import"), ("search",)} <= set(
        commands
    )
    for words, parser in commands.items():
        text = parser.format_help()
        assert parser.description, words
        assert "examples:\n  hwlab " + " ".join(words) in text, words
        for action in parser._actions:
            if action.option_strings or action.dest not in ("help",):
                assert action.help, (words, action.dest)


def test_the_shared_flags_mean_the_same_everywhere() -> None:
    commands = dict(_commands(build_parser()))
    measuring = {"--threads", "--core-mask", "--governor", "--power", "--lock-wait"}
    for words in (("profile",), ("predictors", "rules"), ("predictors", "fit"), ("predictors", "eval"),
                  ("validate",), ("search",)):  # fmt: skip
        flags = {o for a in commands[words]._actions for o in a.option_strings}
        assert measuring <= flags and "--backend" in flags and "--json" in flags, words
    for words, parser in commands.items():
        flags = {o for a in parser._actions for o in a.option_strings}
        assert "--tables" not in flags and "--predictors" not in flags and "--runs" not in flags, words
        backend = next((a for a in parser._actions if "--backend" in a.option_strings), None)
        if backend is not None and words != ("tables", "import"):
            assert backend.default == ("onnxruntime",), words


def test_devices_trust_keeps_an_inventory_given_before_the_action(tmp_path: Path) -> None:
    args = build_parser().parse_args(["devices", "--inventory", str(tmp_path), "trust", "board"])
    assert (args.inventory, args.name) == (str(tmp_path), "board")
    args = build_parser().parse_args(["devices", "trust", "board", "--inventory", str(tmp_path)])
    assert args.inventory == str(tmp_path)


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["search", "--latency-ms", "nan"], "expected a finite number > 0, not nan"),
        (["search", "--latency-ms", "inf"], "expected a finite number > 0, not inf"),
        (["search", "--latency-ms", "0"], "expected a finite number > 0, not 0"),
        (["search", "--latency-ms", "-1"], "expected a finite number > 0, not -1"),
        (["search", "--latency-ms", "1", "--mutation-prob", "2"], "<= 1"),
        (["profile", "--table", "../out"], "is not a safe name"),
        (["profile", "--max-time", "0"], "expected a finite number > 0"),
        (["predictors", "fit", "--threads", "0"], "expected a whole number from 1 to 1024, not 0"),
        (["search", "--latency-ms", "1", "--input-size", "100000"], "from 8 to 4096, not 100000"),
        (["search", "--latency-ms", "1", "--population", "10000000"], "from 1 to 100000, not 10000000"),
        (["search", "--latency-ms", "1", "--batch-size", "1000000"], "from 1 to 65536, not 1000000"),
        (["profile", "--count", "0"], "from 1 to 100000, not 0"),
        (["predictors", "fit", "--spos-space", "32"], "SPOS space '32' is not SIZE,WIDTH[,STRIDE[,CLASSES]]"),
        (["predictors", "fit", "--spos-space", "32,-1"], "SPOS space '32,-1' is not"),
        (["predictors", "fit", "--spos-space", "32,0.25,1,10,5"], "is not SIZE,WIDTH"),
    ],
)
def test_bad_numbers_and_names_are_refused_while_parsing(capsys: pytest.CaptureFixture[str], argv, said) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and said in capsys.readouterr().err


def test_inventory_text_is_printed_as_text_not_markup(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "board.yaml").write_text("name: board\ntransport: local\ndescription: '[/x] [bold]not bold'\n")
    rc, out, err = run_cli(capsys, "devices", "--inventory", str(tmp_path))
    assert rc == 0 and "[/x] [bold]not bold" in out and not err


def test_an_error_is_one_line_and_debug_shows_its_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hwlab.errors import TableError

    argv = ["tables", "show", "local/onnxruntime/none", "--tables-dir", str(tmp_path)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "fix:" in err and "Traceback" not in err
    with pytest.raises(TableError, match="no table at"):
        main(["--debug", *argv])

    def broken(_root: Path) -> list[TableId]:
        raise RuntimeError("a bug")

    monkeypatch.setattr("hwlab.cli.tables.list_tables", broken)
    assert main(["tables", "list", "--tables-dir", str(tmp_path)]) == 70
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: a bug" in err and "hwlab --debug" in err and "Traceback" not in err
    with pytest.raises(RuntimeError, match="a bug"):
        main(["--debug", "tables", "list", "--tables-dir", str(tmp_path)])


def test_rows_whose_floor_never_settled_are_measured_again_and_the_old_rows_kept(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HWLAB_CACHE", str(tmp_path / "cache"))
    tables = tmp_path / "t"
    argv = ["profile", "--backend", "onnxruntime", "--space", "generic", "--count", "4", "--seed", "3", *FAST,
            "--tables-dir", str(tables), "--json"]  # fmt: skip
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 0, err
    rows_file = tables / "local" / "onnxruntime" / "generic" / "ops.jsonl"
    rows = [json.loads(line) for line in rows_file.read_text().splitlines()]
    assert all(str(r["correction"]).startswith("floor") for r in rows)
    # Which rows settled depends on this machine's noise: the test sets each row's floor CI itself, one
    # row far above the stop rule's 2%, the others within it.
    unsettled = rows[1]["key"]
    for r in rows:
        r["ci_rel"] = 0.25 if r["key"] == unsettled else 0.005
    rows_file.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    rc, out, err = run_cli(capsys, *argv)  # without the flag: nothing to do
    assert rc == 0 and json.loads(out)[0]["measured"] == 0, err
    rc, out, err = run_cli(capsys, *argv, "--remeasure-unsettled")
    assert rc == 0, err
    (report,) = json.loads(out)
    assert report["measured"] == 1 and report["skipped"] == 3
    table = LookupTable(rows_file.parent)
    assert table.keys() == {r["key"] for r in rows}
    assert table.lookup(unsettled)["measured_at"] > rows[1]["measured_at"]  # measured again
    (kept,) = [json.loads(line) for line in (rows_file.parent / "superseded.jsonl").read_text().splitlines()]
    assert kept == rows[1]  # the row it replaced, as it was
