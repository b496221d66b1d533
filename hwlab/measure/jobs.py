"""The job a device runs, built by the host from the runner's own classes and checked by its own rules.

Host and runner share ``hwlab_runner.job.Job``: the host fills it in, the runner's
validation checks it before anything is exported or pushed, and what the device
reads is exactly what was checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from hwlab_runner.job import GraphRule, InputData, InputSpec, Job, JobError, ModelSpec, PowerRule, checked

from hwlab.errors import InvalidRequest
from hwlab.inventory import DeviceSpec
from hwlab.measure.placement import Placement
from hwlab.measure.settings import MeasureSettings

if TYPE_CHECKING:
    from hwlab.measure.inputs import InputArchive

__all__ = [
    "GraphRule", "InputSpec", "Job", "ModelSpec", "build_job", "model_spec", "power_rule", "with_input_data",
    "with_models",
]  # fmt: skip


def power_rule(wish: str | None, device: DeviceSpec) -> PowerRule | None:
    """The job's power rule: ``none``, a sensor name, ``auto``; unset, the inventory's sensors, else auto."""
    if wish == "none":
        return None
    if wish and wish != "auto":
        return PowerRule(sensors=(wish,))
    if not wish and device.power_sensors:
        return PowerRule(sensors=tuple(device.power_sensors))
    return PowerRule()


def _valid(job: Job, device: DeviceSpec) -> Job:
    try:
        return checked(job)
    except JobError as err:
        raise InvalidRequest(
            f"the job for {device.name!r} is invalid: {err}", hint="fix the measuring flags or the inventory"
        ) from None


def build_job(
    runtime: str,
    placement: Placement,
    settings: MeasureSettings,
    device: DeviceSpec,
    *,
    governor: str | None = None,
    power: str | None = None,
    runtime_graph: GraphRule | None = None,
) -> Job:
    """A checked job without models yet: everything a measurer must accept or refuse before any export."""
    job = Job(
        runtime=runtime,
        models=(),
        threads=placement.threads,
        core_mask=placement.core_mask,
        settings=settings,
        power=power_rule(power, device),
        governor=governor or device.governor,
        runtime_graph=runtime_graph,
    )
    return _valid(job, device)


def model_spec(key: str, path: str, input_shapes: Sequence[Sequence[int]]) -> ModelSpec:
    """One deployed model of a job (float32 inputs of these shapes)."""
    return ModelSpec(key=key, path=path, inputs=tuple(InputSpec(tuple(s), "float32") for s in input_shapes))


def with_input_data(spec: ModelSpec, path: str, archive: InputArchive) -> ModelSpec:
    """The model measured over the archive deployed at ``path``: one sample's inputs, fed from its members."""
    return replace(spec, inputs=archive.inputs, input_data=InputData(path, archive.members))


def with_models(job: Job, models: Sequence[ModelSpec], device: DeviceSpec, anchors: Sequence[ModelSpec] = ()) -> Job:
    """The job with its models (and the anchors measured with them), checked again as a whole."""
    return _valid(replace(job, models=tuple(models), anchors=tuple(anchors)), device)
