"""Reports: the HTML page in a real headless Chromium with its plots loaded, JUnit XML, JSON, exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from farmkit import synthetic_nights, write_plan

from hwlab.cli import main
from hwlab.farm.db import History, SeriesKey, database_url
from hwlab.farm.report import gather, junit_xml, write_report

SLOWER = SeriesKey("board", "onnxruntime", "mobilenet")
STEADY = SeriesKey("phone", "litert", "resnet")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _farm(tmp_path: Path) -> tuple[Path, History]:
    (tmp_path / "m.onnx").write_bytes(b"x")
    plan = write_plan(tmp_path, "devices: [local]\nmodels: [m.onnx]\n")
    history = History.open(database_url(None, plan))
    synthetic_nights(history, SLOWER, [1.0] * 8 + [1.25] * 2)
    synthetic_nights(history, STEADY, [2.0] * 10, seed=8)
    history.set_health("phone", "bad", "health check failed: golden model +80% against its history")
    return plan, history


def test_the_html_report_opens_in_headless_chromium_with_every_plot_loaded(tmp_path: Path) -> None:
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed: `scripts/setup --dev` installs it (Debian: chromium)")
    _, history = _farm(tmp_path)
    index = write_report(gather(history), tmp_path / "report")
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=10000", "--dump-dom", index.as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    assert 'data-images-loaded="2/2"' in dom  # both series' plots decoded (a missing file would read 1/2)
    assert "regression" in dom and "golden model +80%" in dom
    data = json.loads((tmp_path / "report" / "data" / "board__onnxruntime__mobilenet__latency_ms.json").read_text())
    assert len(data["nights"]) == 10 and len(data["nights"][0]["samples"]) == 100


def test_junit_xml_has_what_gitlab_and_jenkins_read(tmp_path: Path) -> None:
    _, history = _farm(tmp_path)
    report = gather(history)
    [alert] = report.regressions
    assert alert["run_id"] == alert["began_run_id"] == history.runs()[8]["id"]  # the step's night
    root = ET.fromstring(junit_xml(report))
    assert root.tag == "testsuites" and root.get("tests") == "2" and root.get("failures") == "1"
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == {"board", "phone"}
    for suite in suites.values():
        for attribute in ("tests", "failures", "errors", "skipped"):
            assert suite.get(attribute, "").isdigit()
        float(suite.get("time", ""))
        for case in suite.findall("testcase"):
            assert case.get("classname") == suite.get("name") and case.get("name")
            assert float(case.get("time", "")) > 0
    [case] = suites["board"].findall("testcase")
    assert case.get("name") == "onnxruntime/mobilenet/latency_ms"
    failure = case.find("failure")
    assert failure is not None and failure.get("type") == "regression" and "+2" in (failure.get("message") or "")
    assert suites["phone"].find("testcase/failure") is None
    history.acknowledge(alert["id"], "ops", "expected", real=False)
    assert ET.fromstring(junit_xml(gather(history))).get("failures") == "0"


def test_report_cli_json_junit_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan, history = _farm(tmp_path)
    junit = tmp_path / "out" / "farm.xml"
    assert main(["farm", "report", "--plan", str(plan), "--junit", str(junit)]) == 0  # the default never fails
    assert (tmp_path / "farm" / "report" / "index.html").is_file() and junit.is_file()
    assert main(["farm", "report", "--plan", str(plan), "--fail-on-regression"]) == 3
    capsys.readouterr()
    assert main(["farm", "report", "--plan", str(plan), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["unacknowledged_regressions"] == 1 and len(data["series"]) == 2
    [alert] = history.alerts()
    assert main(["farm", "ack", str(alert["id"]), "--real", "--note", "new runtime", "--plan", str(plan)]) == 0
    assert main(["farm", "report", "--plan", str(plan), "--fail-on-regression"]) == 0
    assert history.baseline_start(SLOWER) == alert["began_run_id"]
