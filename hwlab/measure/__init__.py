"""Measuring on a device, piece by piece, from ``hwlab profile`` down to a table row.

* ``settings``   how long and how carefully (the runner's own rule classes);
* ``runtimes``   which runtimes the device runs and this host exports for;
* ``facts``      what the device is (the runner's ``facts``, or its shell);
* ``placement``  which CPUs and how many threads, resolved on the device;
* ``jobs``       the job, built from the runner's ``Job`` and checked by its rules;
* ``deploy``     the runner, models and job file pushed content-addressed;
* ``runner``     the measurer that runs a job through hwlab's runner;
* ``benchmark_model``  the measurer for devices without Python (TFLite's binary);
* ``results``    each result line appended to the table as one row.

``hwlab.profile`` puts them together.
"""

from __future__ import annotations

from hwlab.measure.settings import Cooldown, MeasureSettings, PowerRule, StopRule, Warmup, stopping

__all__ = ["Cooldown", "MeasureSettings", "PowerRule", "StopRule", "Warmup", "stopping"]
