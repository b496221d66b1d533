"""GPU pieces: timing a block with CUDA events, and what GPUs the device has.

A CUDA call returns once its work is queued, so the host clock measures how
fast work is queued, not how long it runs. :class:`CudaEventTimer` brackets a
block with a pair of CUDA events after draining the queue, and reports the
GPU's own elapsed time; ``timing.measure`` takes it in place of the host clock.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any, Callable

NVIDIA_SMI_TIMEOUT_S = 10.0


class DeviceUnavailable(RuntimeError):
    """The job asks for a device this runtime cannot use here; the message says what to install."""


class CudaEventTimer:
    """``timer(block)``: nanoseconds of GPU time for ``block`` back-to-back calls of ``fn``.

    ``torch`` is the module (a stand-in in tests); the events are made once and reused.
    """

    def __init__(self, torch: Any, fn: Callable[[], object]) -> None:
        self._cuda = torch.cuda
        self._fn = fn
        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)

    def __call__(self, block: int) -> int:
        self._cuda.synchronize()  # nothing queued earlier may land inside this block
        self._start.record()
        for _ in range(block):
            self._fn()
        self._end.record()
        self._end.synchronize()
        return int(round(self._start.elapsed_time(self._end) * 1e6))  # ms -> ns


def torch_cuda(torch: Any) -> None:
    """Raise :class:`DeviceUnavailable` unless this torch can run on CUDA."""
    if not torch.cuda.is_available():
        raise DeviceUnavailable(
            f"torch {torch.__version__} here cannot use CUDA (torch.cuda.is_available() is False): "
            "install a CUDA build of torch and the NVIDIA driver, or run the job with device cpu"
        )


def ort_cuda(ort: Any) -> None:
    """Raise :class:`DeviceUnavailable` unless onnxruntime here has the CUDA execution provider."""
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise DeviceUnavailable(
            f"onnxruntime {ort.__version__} here has no CUDAExecutionProvider (available: {', '.join(available)}): "
            "pip install onnxruntime-gpu (in place of onnxruntime), or run the job with device cpu"
        )


def torch_gpus() -> list[dict[str, Any]]:
    """CUDA devices as torch sees them (its index order); [] without torch or CUDA."""
    try:
        import torch

        if not torch.cuda.is_available():
            return []
        out = []
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            out.append(
                {
                    "index": i,
                    "name": props.name,
                    "capability": f"{props.major}.{props.minor}",
                    "memory_mib": int(props.total_memory) // (1 << 20),
                    "cuda": torch.version.cuda,
                }
            )
        return out
    except Exception:
        return []


def nvidia_smi_gpus(timeout_s: float = NVIDIA_SMI_TIMEOUT_S) -> list[dict[str, Any]]:
    """GPUs as ``nvidia-smi`` lists them (PCI order, which may differ from torch's); [] without it."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    argv = [exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader,nounits"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.SubprocessError):  # run() kills the child when the timeout fires
        return []
    if done.returncode != 0:
        return []
    return parse_nvidia_smi(done.stdout)


def parse_nvidia_smi(text: str) -> list[dict[str, Any]]:
    """Rows of ``name, driver_version, memory.total`` (MiB, no units) to dicts."""
    out = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 3 or not fields[0]:
            continue
        digits = fields[2].split()[0] if fields[2] else ""  # "143771" or, without nounits, "143771 MiB"
        memory = int(digits) if digits.isdigit() else None
        out.append({"name": fields[0], "driver_version": fields[1], "memory_mib": memory})
    return out


def ort_providers() -> list[str] | None:
    """onnxruntime's available execution providers; None when it is not installed."""
    try:
        import onnxruntime

        return list(onnxruntime.get_available_providers())
    except Exception:
        return None


def gpu_facts() -> dict[str, Any]:
    """The ``gpus`` and ``onnxruntime_providers`` facts."""
    return {"gpus": {"torch": torch_gpus(), "nvidia_smi": nvidia_smi_gpus()}, "onnxruntime_providers": ort_providers()}
