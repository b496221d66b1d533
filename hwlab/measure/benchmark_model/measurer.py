"""Measuring litert with TFLite's ``benchmark_model`` binary: one run per model, a row as each ends.

The binary times a model and nothing else: it cannot set a cpufreq governor, read a
power sensor or wait for the device to cool. What it cannot honour is refused
before anything is exported or pushed, with the fix; a fixed pause is done here, on
the host, before each model; and power sampling left to its default ("auto")
becomes a note in every row saying why there is no power number.

When the job asks for the runtime's graph, each model that measured without error
gets a second, op-profiled run (driver.profiled_graph): the timed figure never carries
the profiler's overhead.
"""

from __future__ import annotations

import time

from hwlab.errors import InvalidRequest
from hwlab.measure.benchmark_model.driver import profiled_graph, run_benchmark_model
from hwlab.measure.deploy import Deployer
from hwlab.measure.jobs import Job
from hwlab.measure.results import ResultSink
from hwlab.progress import Progress

NO_POWER = "benchmark_model reads no power sensor: measure power with hwlab's runner (needs Python on the device)"


class BenchmarkModelMeasurer:
    """Runs each model of a litert job through the device's ``benchmark_model``."""

    name = "benchmark_model"

    def __init__(self, binary: str) -> None:
        self.binary = binary

    def check(self, job: Job) -> None:
        """Refuse what benchmark_model cannot do, before any model is exported."""
        refused = []
        if job.governor is not None:
            refused.append(
                f"setting the cpufreq governor ({job.governor}): set it on the device by hand (as root) and"
                " leave out --governor and the inventory's governor:"
            )
        if job.power is not None and job.power.sensors is not None:
            refused.append(
                f"sampling power sensor {', '.join(job.power.sensors)}: leave out --power and the inventory's"
                " power_sensors: (rows then say why they have no power number)"
            )
        if job.settings.cooldown.max_temp_c is not None:
            refused.append("cooling down below --max-temp (it reads no thermal zone): use --pause SECONDS instead")
        if refused:
            raise InvalidRequest(
                "this device measures litert with benchmark_model, which cannot do " + "; nor ".join(refused),
                hint="drop those requests, or install Python with numpy on the device to use hwlab's runner",
            )

    def run(self, deployer: Deployer, job: Job, sink: ResultSink, progress: Progress) -> None:
        total = len(job.models)
        for i, model in enumerate((*job.anchors, *job.models)):  # one block each: it has no rounds
            progress("measure", max(0, i - len(job.anchors)), total, model.key)
            if job.settings.cooldown.pause_s:
                time.sleep(job.settings.cooldown.pause_s)
            result = run_benchmark_model(
                deployer.transport, self.binary, model.path, model.key, job.threads, job.settings,
                core_mask=job.core_mask,
            )  # fmt: skip
            anchor = model in job.anchors
            if job.runtime_graph is not None and result["status"] == "ok" and not anchor:
                result["runtime_graph"] = profiled_graph(
                    deployer.transport, self.binary, model.path, job.threads, job.settings, job.runtime_graph,
                    core_mask=job.core_mask,
                )  # fmt: skip
            if job.power is not None:
                result["power"] = {"sensor": None, "reason": NO_POWER}
            if anchor:
                result["anchor"] = True
            sink.append(result)
        progress("measure", total, total, "")
