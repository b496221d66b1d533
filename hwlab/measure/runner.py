"""Measuring with hwlab's own runner (runners/hwlab_runner): one job, one stream of result lines.

The runner honours everything a job asks (governor, power sampling, cooldown), so
nothing is refused here; the job file is deployed content-addressed and the
runner streams one line per model, appended to the table as it arrives.
"""

from __future__ import annotations

from hwlab.measure.deploy import Deployer
from hwlab.measure.jobs import Job
from hwlab.measure.results import ResultSink, read_results
from hwlab.progress import Progress

LINE_SLACK_S = 300.0  # beyond the rules' own bounds: loading a large model, a slow link


class RunnerMeasurer:
    """Runs a whole job through ``python -m hwlab_runner run`` on the device."""

    name = "hwlab_runner"

    def check(self, job: Job) -> None:
        """The runner can do whatever a valid job asks."""

    def run(self, deployer: Deployer, job: Job, sink: ResultSink, progress: Progress) -> None:
        argv, env = deployer.runner_command("run", deployer.job(job))
        s = job.settings
        # The slowest legitimate silence: cooldown, then warming up and timing one model, or a whole
        # group's rounds (its lines come when it ends; a visit may overrun the group's time by one round).
        if s.rounds is None:
            measuring_s = 2 * s.stop.max_time_s
        else:
            members = min(len(job.models), s.rounds.group_size) + len(job.anchors)
            measuring_s = 2 * s.rounds.max_time_s * members
        line_timeout = s.cooldown.timeout_s + s.cooldown.pause_s + measuring_s + LINE_SLACK_S
        stream = deployer.transport.stream(argv, line_timeout=line_timeout, env=env)
        read_results(stream, sink, [m.key for m in job.models], progress)
