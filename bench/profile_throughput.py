"""Throughput of profiling: one runner process for many models vs one fresh process per model.

Per-model invocations (the way `benchmark_model` is driven one model at a time)
pay interpreter start-up, runtime import and session set-up for every op. This
script profiles the same ops both ways in one run, with the same stop rules,
and prints ops per minute, their ratio, and how well the medians agree.

    .venv/bin/python bench/profile_throughput.py [--ops 48] [--backend onnxruntime]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from hwlab.export import FORMAT_FOR_RUNTIME, export_spec
from hwlab.inventory import LOCAL_DEFAULT
from hwlab.measure.deploy import Deployer
from hwlab.measure.jobs import Job, build_job, model_spec, with_models
from hwlab.measure.placement import Placement
from hwlab.measure.settings import MeasureSettings
from hwlab.profile import ProfileRequest, profile
from hwlab.space import get_space
from hwlab.transport import LocalTransport


def per_model_processes(deployer: Deployer, job: Job) -> dict[str, float]:
    """One fresh runner process per model of ``job``; returns median µs by key."""
    medians = {}
    for model in job.models:
        argv, env = deployer.runner_command("run", deployer.job(replace(job, models=(model,))))
        done = deployer.transport.run(argv, timeout=600, env=env).check()
        result = json.loads(done.stdout.strip().splitlines()[-1])
        if result["status"] != "ok":
            raise SystemExit(f"{model.key} failed: {result['error']}")
        medians[model.key] = result["summary"]["median_us"]
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", type=int, default=48, help="number of generic ops (>= 40)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--backend", default="onnxruntime")
    args = parser.parse_args()

    specs = get_space("generic", count=args.ops, seed=args.seed)
    settings = MeasureSettings()
    fmt = FORMAT_FOR_RUNTIME[args.backend]
    print(f"exporting {len(specs)} ops to {fmt} (cached, not timed) ...", flush=True)
    exported = {s.key: export_spec(s, fmt) for s in specs}

    transport = LocalTransport()
    deployer = Deployer(transport, LOCAL_DEFAULT)
    models = [model_spec(key, deployer.model(e.path, e.sha256), e.input_shapes) for key, e in exported.items()]
    job = build_job(args.backend, Placement(None, 1), settings, LOCAL_DEFAULT, power="none")
    job = with_models(job, models, LOCAL_DEFAULT)
    deployer.runner()

    with tempfile.TemporaryDirectory() as tmp:
        request = ProfileRequest(
            device=LOCAL_DEFAULT,
            backend=args.backend,
            specs=specs,
            space="generic",
            tables_root=Path(tmp),
            threads=1,
            settings=settings,
            power="none",  # as the per-model jobs: no idle baseline in either
        )
        print("hwlab runner: one process, all models ...", flush=True)
        t0 = time.perf_counter()
        report = profile(request, transport=transport)
        one_process_s = time.perf_counter() - t0
        runner_medians = {r["key"]: r["median_ms"] * 1000.0 for r in report.measured if r["status"] == "ok"}

    print("one fresh process per model ...", flush=True)
    t0 = time.perf_counter()
    fresh_medians = per_model_processes(deployer, job)
    fresh_s = time.perf_counter() - t0

    n = len(specs)
    diffs = [abs(runner_medians[k] - fresh_medians[k]) / fresh_medians[k] * 100.0 for k in runner_medians]
    worst_key = max(runner_medians, key=lambda k: abs(runner_medians[k] - fresh_medians[k]) / fresh_medians[k])
    print()
    print(f"ops profiled                 {n} ({args.backend}, 1 thread, generic space seed {args.seed})")
    print(f"one runner process           {one_process_s:8.1f} s  {n / one_process_s * 60:8.1f} ops/min")
    print(f"one process per model        {fresh_s:8.1f} s  {n / fresh_s * 60:8.1f} ops/min")
    print(f"speed-up                     {fresh_s / one_process_s:8.2f} x")
    print(f"median |difference| per op   {statistics.median(diffs):8.2f} %")
    print(f"worst  |difference| per op   {max(diffs):8.2f} %  ({worst_key})")
    within = [sum(d <= limit for d in diffs) for limit in (5, 10)]
    print(f"ops within 5% / 10%          {within[0]} / {within[1]} of {len(diffs)}")


if __name__ == "__main__":
    main()
