"""The CUDA paths as far as a machine without a GPU can check them: the event timer's plumbing, clear errors."""

from __future__ import annotations

import pytest
from hwlab_runner import gpu
from hwlab_runner.backends import LiteRTBackend, OnnxRuntimeBackend, TorchBackend
from hwlab_runner.gpu import CudaEventTimer, DeviceUnavailable, parse_nvidia_smi
from hwlab_runner.timing import StopRule, Warmup, measure


class FakeCuda:
    """Stands in for ``torch.cuda``: a GPU clock in ms that only the queued work moves."""

    def __init__(self) -> None:
        self.gpu_ms = 0.0
        self.queue: list[float] = []
        self.log: list[str] = []
        cuda = self

        class Event:
            def __init__(self, enable_timing: bool = False) -> None:
                assert enable_timing
                self.at: float | None = None

            def record(self) -> None:
                cuda.log.append("record")
                cuda.drain()
                self.at = cuda.gpu_ms

            def synchronize(self) -> None:
                cuda.log.append("event.synchronize")

            def elapsed_time(self, end: Event) -> float:
                return end.at - self.at

        self.Event = Event

    def drain(self) -> None:
        self.gpu_ms += sum(self.queue)
        self.queue.clear()

    def synchronize(self) -> None:
        self.log.append("synchronize")
        self.drain()


class FakeTorch:
    def __init__(self) -> None:
        self.cuda = FakeCuda()


def test_cuda_event_timer_reports_gpu_time_per_block():
    torch = FakeTorch()
    torch.cuda.queue.append(7.0)  # work queued before the block must not land in it
    calls = []

    def kernel() -> None:  # returns at once; 0.25 ms of GPU work
        calls.append(1)
        torch.cuda.queue.append(0.25)

    timer = CudaEventTimer(torch, kernel)
    assert timer(4) == 1_000_000  # 4 × 0.25 ms = 1 ms = 1e6 ns
    assert torch.cuda.log == ["synchronize", "record", "record", "event.synchronize"]
    assert len(calls) == 4
    assert timer(1) == 250_000


class FakeBlockTimer:
    """A block timer injected like the CPU clock: each block of n calls takes n × 1500 ns of fake time."""

    def __init__(self) -> None:
        self.now = 0
        self.blocks: list[int] = []

    def clock(self) -> int:
        return self.now

    def __call__(self, block: int) -> int:
        self.blocks.append(block)
        self.now += 1500 * block
        return 1500 * block


def test_measure_takes_its_block_times_from_the_block_timer():
    timer = FakeBlockTimer()
    host_calls = []

    def fn() -> None:  # warm-up calls only: blocks go through the timer
        host_calls.append(1)
        timer.now += 10

    events = []
    m = measure(
        fn,
        Warmup(3, 0.0),
        StopRule(5, 0.0, 1.0, None, 0.95, 7),
        block_min_time_s=4e-6,
        clock=timer.clock,
        block_timer=timer,
        on_sampling_start=lambda: events.append(("start", len(timer.blocks))),
        on_sampling_end=lambda: events.append(("end", len(timer.blocks))),
    )
    assert len(host_calls) == 3 and m.warmup_count == 3
    assert timer.blocks == [1, 2, 4] + [4] * 6  # sizing doubles to 4 × 1.5 µs >= 4 µs; 7 samples in all
    assert m.samples_us == (1.5,) * 7 and m.block == 4 and m.stop_reason == "max_count"
    assert events == [("start", 3), ("end", 9)]  # the window is the sampling phase exactly


def test_the_sampling_end_hook_runs_when_a_call_fails():
    timer = FakeBlockTimer()
    ended = []

    def failing(block: int) -> int:
        if len(timer.blocks) >= 2:
            raise RuntimeError("CUDA error: device-side assert")
        return timer(block)

    with pytest.raises(RuntimeError):
        measure(
            lambda: None,
            Warmup(0, 0.0),
            StopRule(5, 0.0, 1.0, None, 0.95, 7),
            block_min_time_s=0.0,
            clock=timer.clock,
            block_timer=failing,
            on_sampling_start=lambda: ended.append("start"),
            on_sampling_end=lambda: ended.append("end"),
        )
    assert ended == ["start", "end"]


def test_cuda_requested_where_there_is_none():
    with pytest.raises(DeviceUnavailable, match="here has no CUDAExecutionProvider .*pip install onnxruntime-gpu"):
        OnnxRuntimeBackend().check_device("cuda")
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(DeviceUnavailable, match=r"cannot use CUDA \(torch.cuda.is_available\(\) is False\)"):
        TorchBackend().check_device("cuda")
    with pytest.raises(DeviceUnavailable, match="runtime litert runs on cpu only"):
        LiteRTBackend().check_device("cuda")
    OnnxRuntimeBackend().check_device("cpu")


def test_onnxruntime_provider_check_with_a_stand_in():
    class Ort:
        __version__ = "1.20.0"
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]

        @classmethod
        def get_available_providers(cls):
            return cls.providers

    assert gpu.ort_cuda(Ort) is None  # CUDA there: accepted
    Ort.providers = ["CPUExecutionProvider"]
    with pytest.raises(DeviceUnavailable, match=r"onnxruntime 1.20.0 here has no CUDAExecutionProvider"):
        gpu.ort_cuda(Ort)


def test_nvidia_smi_rows():
    text = "NVIDIA H200, 570.86.15, 143771\nNVIDIA A100-SXM4-40GB, 535.54.03, 40960 MiB\n\n"
    assert parse_nvidia_smi(text) == [
        {"name": "NVIDIA H200", "driver_version": "570.86.15", "memory_mib": 143771},
        {"name": "NVIDIA A100-SXM4-40GB", "driver_version": "535.54.03", "memory_mib": 40960},
    ]


def test_gpu_facts_without_a_gpu(monkeypatch):
    monkeypatch.setattr(gpu.shutil, "which", lambda name: None)
    facts = gpu.gpu_facts()
    assert facts["gpus"]["nvidia_smi"] == []
    assert isinstance(facts["gpus"]["torch"], list)
    assert "CPUExecutionProvider" in facts["onnxruntime_providers"]
