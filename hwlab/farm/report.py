"""What the farm knows, for people and for machines: a static HTML report, JSON, and JUnit XML.

``write_report`` writes ``index.html`` (no server needed: open the file) with the alerts, the devices'
health, and one PNG per series (nightly medians with their spread, the noise band the last night was
judged against, and a marker where each alert's step began; each night's samples divided by its factor as
the plan's correction says, hwlab/farm/baseline.py), plus ``data/<series>.json`` with every
night's raw samples (the evidence behind each point) and ``report.json``.

``junit_xml`` is one testcase per series (classname = device, name = backend/model/metric, time = the
last night's raw median in seconds); an unacknowledged regression is its failure, as GitLab and Jenkins read.
"""

from __future__ import annotations

import html
import json
import math
import re
import statistics
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwlab.farm.baseline import NIGHT_SPEED, earlier_nights, night_factors, night_of
from hwlab.farm.db import History, SeriesKey, now
from hwlab.farm.regress import Thresholds, judge_night, night_noise


@dataclass
class SeriesReport:
    key: SeriesKey
    slug: str
    nights: list[dict[str, Any]]  # run_id, started_at, status, median, p10, p90, n, error
    verdict: dict[str, Any] | None  # the last night against its baseline
    alerts: list[dict[str, Any]] = field(default_factory=list)
    samples: dict[str, list[float]] = field(default_factory=dict)  # run id -> the night's raw samples

    @property
    def last(self) -> dict[str, Any] | None:
        return self.nights[-1] if self.nights else None


@dataclass
class FarmReport:
    generated_at: str
    runs: list[dict[str, Any]]
    devices: list[dict[str, Any]]
    series: list[SeriesReport]
    alerts: list[dict[str, Any]]

    @property
    def regressions(self) -> list[dict[str, Any]]:
        """Alerts of slower series that nobody has acknowledged."""
        return [a for a in self.alerts if a["kind"] == "regression" and a["acknowledged_at"] is None]

    def to_json(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at, "runs": self.runs, "devices": self.devices, "alerts": self.alerts,
            "unacknowledged_regressions": len(self.regressions),
            "series": [{"series": str(s.key), "device": s.key.device, "backend": s.key.backend, "model": s.key.model,
                        "metric": s.key.metric, "nights": s.nights, "verdict": s.verdict,
                        "alerts": [a["id"] for a in s.alerts]} for s in self.series],
        }  # fmt: skip


def slug(key: SeriesKey) -> str:
    """A file name for a series (its parts are names already; anything else becomes '_')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{key.device}__{key.backend}__{key.model}__{key.metric}")


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def gather(history: History, thresholds: Thresholds = Thresholds()) -> FarmReport:
    """Everything the report shows, read from the database (nothing is measured)."""
    alerts = history.alerts()
    series_reports = []
    for row in history.all_series():
        key = SeriesKey(row["device"], row["backend"], row["model"], row["metric"])
        results = history.results(key, kinds=("night",))
        if not results:
            continue
        correction = "none" if key.model == NIGHT_SPEED else thresholds.correction
        factors = night_factors(history, key.device, key.backend) if correction == "common" else None
        nights = []
        for r in results:
            samples = list(night_of(r, correction, factors).samples) if r["samples"] else []
            nights.append({
                "run_id": r["run_id"], "started_at": r["run_started_at"], "status": r["status"],
                "error_class": r["error_class"], "error": r["error"],
                "median": float(statistics.median(samples)) if samples else None,
                "raw_median": r["raw_median"], "speed_factor": r["speed_factor"], "n": r["n"],
                "p10": _quantile(samples, 0.1) if samples else None,
                "p90": _quantile(samples, 0.9) if samples else None,
            })  # fmt: skip
        verdict = None
        last_ok = next((r for r in reversed(results) if r["status"] == "ok" and r["samples"]), None)
        if last_ok is not None:
            before = [n for _, n in earlier_nights(history, key, last_ok["run_id"], correction=correction,
                                                    factors=factors)]  # fmt: skip
            v = judge_night(before, night_of(last_ok, correction, factors), thresholds)
            window = before[-thresholds.baseline_nights :]
            base = statistics.median([s for n in window for s in n.samples]) if window else None
            verdict = {"run_id": last_ok["run_id"], "kind": v.kind, "change": v.change, "p": v.p,
                       "threshold": v.threshold, "noise": v.noise if v.noise is not None else night_noise(window),
                       "baseline_median": base, "baseline_nights": v.baseline_nights}  # fmt: skip
        mine = [a for a in alerts if (a["device"], a["backend"], a["model"], a["metric"]) == tuple(row[k] for k in (
            "device", "backend", "model", "metric"))]  # fmt: skip
        samples = {r["run_id"]: r["samples"] for r in results}
        series_reports.append(SeriesReport(key, slug(key), nights, verdict, mine, samples))
    return FarmReport(now(), history.runs(), history.devices(), series_reports, alerts)


def _plot(series: SeriesReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 2.6), dpi=96)
    ok = [(i, n) for i, n in enumerate(series.nights) if n["status"] == "ok" and n["median"] is not None]
    if ok:
        xs = [i for i, _ in ok]
        ax.fill_between(xs, [n["p10"] for _, n in ok], [n["p90"] for _, n in ok], color="#9ecae1", alpha=0.5,
                        label="p10-p90 of the night's samples")  # fmt: skip
        ax.plot(xs, [n["median"] for _, n in ok], "o-", color="#08519c", ms=3, label="median")
    failed = [i for i, n in enumerate(series.nights) if n["status"] != "ok"]
    for i in failed:
        ax.axvline(i, color="#999999", ls=":", lw=1)
    v = series.verdict
    if v and v.get("baseline_median") and v.get("threshold") is not None:
        base, t = v["baseline_median"], v["threshold"]
        ax.axhspan(base * (1 - t), base * (1 + t), color="#fdae6b", alpha=0.25, label=f"baseline ±{t:.0%} (noise band)")
    runs = [n["run_id"] for n in series.nights]
    for alert in series.alerts:
        began = alert.get("began_run_id") or alert["run_id"]
        if began in runs:
            colour = "#a50f15" if alert["kind"] == "regression" else "#006d2c"
            ax.axvline(runs.index(began) - 0.5, color=colour, lw=1.5, label=f"{alert['kind']} #{alert['id']} began")
    ax.set_xticks(range(len(runs)))
    ax.set_xticklabels(
        [(n["started_at"] or "")[5:16].replace("T", " ") for n in series.nights], rotation=45, ha="right", fontsize=6
    )
    ax.set_ylabel(series.key.metric)
    ax.set_title(str(series.key), fontsize=8)
    ax.legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:+.1%}"


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hwlab farm report</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }} table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 2px 8px; font-size: 90%; }} .regression {{ color: #a50f15; }}
.improvement {{ color: #006d2c; }} .bad {{ color: #a50f15; font-weight: bold; }} figure {{ margin: 0 0 1em 0; }}
</style></head>
<body>
<h1>hwlab farm report</h1>
<p>Generated {generated}. {runs} run(s), the last {last}. {unacked} unacknowledged regression(s).</p>
<h2>Alerts</h2>
{alerts}
<h2>Devices</h2>
{devices}
<h2>Series</h2>
{series_table}
{figures}
<script>
// Sets data-images-loaded on <body> once every plot has loaded: what a headless browser checks.
window.addEventListener("load", function () {{
  var images = Array.prototype.slice.call(document.images);
  document.body.setAttribute("data-images-loaded", images.filter(function (i) {{
    return i.complete && i.naturalWidth > 0; }}).length + "/" + images.length);
}});
</script>
</body></html>
"""


def write_report(report: FarmReport, out: Path) -> Path:
    """Write the static report into ``out``; the path of its ``index.html``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "series").mkdir(exist_ok=True)
    (out / "data").mkdir(exist_ok=True)
    e = html.escape
    alert_rows = [[a["id"], f"<span class='{a['kind']}'>{a['kind']}</span>", e(a["device"]), e(a["backend"]),
                   e(a["model"]), _pct(a["change"]), f"{a['p']:.1e}" if a["p"] is not None else "",
                   _pct(a["threshold"]).lstrip("+"), e(a["run_id"]), e(a.get("began_run_id") or ""),
                   e(a["acknowledged_at"] or "no") + (f" ({e(a['note'] or '')})" if a["acknowledged_at"] else "")]
                  for a in report.alerts]  # fmt: skip
    alerts = _table(["#", "kind", "device", "backend", "model", "change", "p", "threshold", "run", "began",
                     "acknowledged"], alert_rows) if alert_rows else "<p>No alerts.</p>"  # fmt: skip
    device_rows = [[e(d["name"]), f"<span class='{e(d['health'])}'>{e(d['health'])}</span>", e(d["state"]),
                    e(d["health_reason"] or ""), e(d["health_changed_at"] or ""), d["infra_errors"],
                    e((d["fingerprint_hash"] or "")[:12])] for d in report.devices]  # fmt: skip
    devices = _table(["device", "health", "state", "why", "since", "infrastructure errors", "fingerprint"],
                     device_rows)  # fmt: skip
    series_rows, figures = [], []
    for s in report.series:
        _plot(s, out / "series" / f"{s.slug}.png")
        data = {"series": str(s.key), "unit": s.key.metric,
                "nights": [{**n, "samples": s.samples.get(n["run_id"], [])} for n in s.nights]}  # fmt: skip
        (out / "data" / f"{s.slug}.json").write_text(json.dumps(data, default=str))
        last, v = s.last or {}, s.verdict or {}
        series_rows.append([e(str(s.key)), f"{last.get('median') or float('nan'):.4g}", e(last.get("status", "")),
                            e(v.get("kind", "")), _pct(v.get("change")), _pct(v.get("threshold")).lstrip("+"),
                            f"{v['noise']:.1%}" if v.get("noise") is not None else "",
                            f"<a href='data/{s.slug}.json'>raw samples</a>"])  # fmt: skip
        figures.append(f"<figure id='{s.slug}'><img src='series/{s.slug}.png' alt='{e(str(s.key))}'></figure>")
    series_table = _table(["series", "last median", "status", "verdict", "change", "threshold", "night noise",
                           "data"], series_rows)  # fmt: skip
    runs = report.runs
    page = PAGE.format(generated=e(report.generated_at), runs=len(runs), last=e(runs[-1]["id"]) if runs else "none",
                       unacked=len(report.regressions), alerts=alerts, devices=devices, series_table=series_table,
                       figures="\n".join(figures))  # fmt: skip
    (out / "report.json").write_text(json.dumps(report.to_json(), indent=1, default=str))
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def _seconds(series: SeriesReport) -> float:
    """A testcase's time: the series' last raw median, in seconds (0 for a series that is not a latency)."""
    last = series.last or {}
    return (last.get("raw_median") or 0.0) / 1000.0 if series.key.metric == "latency_ms" else 0.0


def junit_xml(report: FarmReport) -> str:
    """JUnit XML of the series: what GitLab's and Jenkins' test reports read."""
    failing = {(a["device"], a["backend"], a["model"], a["metric"]): a for a in report.regressions}
    suites = ET.Element("testsuites", name="hwlab farm")
    by_device: dict[str, list[SeriesReport]] = {}
    for s in report.series:
        by_device.setdefault(s.key.device, []).append(s)
    total_tests = total_failures = 0
    for device, members in by_device.items():
        failures = sum(1 for s in members if (s.key.device, s.key.backend, s.key.model, s.key.metric) in failing)
        errors = sum(1 for s in members if s.last and s.last["status"] != "ok")
        seconds = sum(_seconds(s) for s in members)
        suite = ET.SubElement(suites, "testsuite", name=device, tests=str(len(members)), failures=str(failures),
                              errors=str(errors), skipped="0", time=f"{seconds:.6f}",
                              timestamp=report.generated_at[:19])  # fmt: skip
        for s in members:
            last = s.last or {}
            case = ET.SubElement(suite, "testcase", classname=device,
                                 name=f"{s.key.backend}/{s.key.model}/{s.key.metric}",
                                 time=f"{_seconds(s):.6f}")  # fmt: skip
            alert = failing.get((s.key.device, s.key.backend, s.key.model, s.key.metric))
            if alert is not None:
                began = alert.get("began_run_id") or alert["run_id"]
                text = (f"{s.key} is {alert['change']:+.1%} slower since run {began} (p={alert['p']:.1e},"
                        f" threshold {alert['threshold']:.1%}); alert #{alert['id']}")  # fmt: skip
                failure = ET.SubElement(case, "failure", message=text, type="regression")
                failure.text = text
            elif last.get("status") not in (None, "ok"):
                error = ET.SubElement(case, "error", message=str(last.get("error") or ""), type=last.get(
                    "error_class") or "error")  # fmt: skip
                error.text = str(last.get("error") or "")
        total_tests += len(members)
        total_failures += failures
    suites.set("tests", str(total_tests))
    suites.set("failures", str(total_failures))
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)
