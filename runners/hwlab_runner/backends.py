"""Registry of inference runtimes: each knows its version and how to load a model.

Runtimes are imported lazily, inside the backend that needs them, so a device
only needs the one runtime its job names. A runtime that is not installed
raises :class:`RuntimeNotInstalled`, whose message says how to install it.
A job's ``device`` ("cpu" or "cuda") is checked by :meth:`Backend.check_device`
before any model, so a device without CUDA gives error lines, not a crash.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Sequence

import numpy as np

from .gpu import CudaEventTimer, DeviceUnavailable, ort_cuda, torch_cuda
from .runtime_graph import GraphRule, capture_onnxruntime

if TYPE_CHECKING:
    from .job import InputSpec


class RuntimeNotInstalled(RuntimeError):
    """The runtime a job asks for cannot be imported on this device."""


class Loaded:
    """A loaded model with fixed inputs: calling it runs one inference.

    ``context()`` is entered once around warm-up and sampling (torch's
    inference mode), so its cost is not paid on every call. ``block_timer``
    (None: the host clock) times ``block`` calls in ns, for devices whose calls
    return before the work is done; ``timer`` names it in the result line.
    ``info`` holds facts for the result line (e.g. onnxruntime's providers).
    ``feed(arrays)`` replaces the inputs of the next calls (one array per input, as the job's
    ``inputs`` describe them): real inputs, fed outside the timed call (calls.py).
    """

    def __init__(
        self,
        run: Callable[[], object],
        context: Callable[[], ContextManager[Any]] | None = None,
        block_timer: Callable[[int], int] | None = None,
        timer: str = "perf_counter_ns",
        info: dict[str, Any] | None = None,
        feed: Callable[[Sequence[np.ndarray]], None] | None = None,
    ):
        self._run = run
        self._context = context or contextlib.nullcontext
        self.block_timer = block_timer
        self.timer = timer
        self.info: dict[str, Any] = dict(info or {})
        self._feed = feed

    def __call__(self) -> object:
        return self._run()

    def feed(self, arrays: Sequence[np.ndarray]) -> None:
        if self._feed is None:
            raise RuntimeError("this runtime's loaded model takes no other inputs")
        self._feed(arrays)

    def context(self) -> ContextManager[Any]:
        return self._context()


def make_inputs(inputs: Sequence[InputSpec], seed: int) -> list[np.ndarray]:
    """Deterministic random inputs: normal floats, small non-negative integers, fair booleans."""
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in inputs:
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            arrays.append(rng.standard_normal(spec.shape).astype(dtype))
        elif dtype.kind == "b":
            arrays.append(rng.random(spec.shape) < 0.5)
        else:
            arrays.append(rng.integers(0, 16, size=spec.shape).astype(dtype))
    return arrays


def _import(module: str, install: str) -> Any:
    """Import ``module`` or raise :class:`RuntimeNotInstalled` naming the pip package."""
    if importlib.util.find_spec(module) is None:
        raise RuntimeNotInstalled(f"{module} is not installed on the device: pip install {install}")
    return importlib.import_module(module)


def _check_count(path: str, expected: int, given: int) -> None:
    if expected != given:
        raise ValueError(f"{path} has {expected} inputs but the job gives {given}")


class Backend:
    """One runtime. Subclasses set ``name`` and implement ``module`` and ``load``."""

    name = ""
    devices: tuple[str, ...] = ("cpu",)

    def module(self) -> Any:
        """The imported runtime module (raises :class:`RuntimeNotInstalled`)."""
        raise NotImplementedError

    def identify(self) -> tuple[str, str]:
        """(module name, version) of the runtime (raises :class:`RuntimeNotInstalled`)."""
        mod = self.module()
        return mod.__name__, str(getattr(mod, "__version__", "unknown"))

    def version(self) -> str:
        """Version of the runtime (raises :class:`RuntimeNotInstalled`)."""
        return self.identify()[1]

    def probe(self) -> dict[str, Any] | None:
        """``{"module", "version"}``; None when the runtime is absent; never raises.

        A runtime that is there but fails to import (a broken wheel, a missing shared
        library) is ``{"module", "version": None, "error"}``, so the host can say so
        instead of "not installed".
        """
        try:
            module, version = self.identify()
        except RuntimeNotInstalled:
            return None
        except Exception as exc:  # noqa: BLE001 - any import failure is reported, not raised
            return {"module": self.module_name(), "version": None, "error": f"{type(exc).__name__}: {exc}"}
        return {"module": module, "version": version}

    def module_name(self) -> str:
        """The import name of the runtime that :meth:`module` would import."""
        return self.name

    def check_device(self, device: str) -> None:
        """Raise :class:`DeviceUnavailable` when this runtime cannot run on ``device`` here."""
        if device not in self.devices:
            raise DeviceUnavailable(f"runtime {self.name} runs on {', '.join(self.devices)} only, not {device}")

    def load(self, path: str, inputs: Sequence[InputSpec], threads: int, seed: int = 0, device: str = "cpu") -> Loaded:
        raise NotImplementedError

    def runtime_graph(
        self, path: str, inputs: Sequence[InputSpec], threads: int, seed: int, rule: GraphRule
    ) -> dict[str, Any]:
        """What the runtime executes for this model (see runtime_graph.py); a runtime that shows nothing says so."""
        raise RuntimeGraphUnavailable(f"{self.name} does not show the graph it executes to a Python caller")


class RuntimeGraphUnavailable(RuntimeError):
    """The runtime cannot say which kernels it runs (the host then keeps its measured fusion rules)."""


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime, sequential execution, ``threads`` intra-op threads.

    On the CPU inputs and outputs are bound once (IO binding), so a sample times the
    graph, not the copy of its outputs into numpy. On cuda the providers are CUDA then
    CPU (for the ops CUDA lacks); ``session.run`` waits for its outputs, so the host
    clock times it, copies to and from the GPU included.
    """

    name = "onnxruntime"
    devices = ("cpu", "cuda")

    def module(self) -> Any:
        return _import("onnxruntime", "onnxruntime")

    def check_device(self, device: str) -> None:
        super().check_device(device)
        if device == "cuda":
            ort_cuda(self.module())

    def load(self, path: str, inputs: Sequence[InputSpec], threads: int, seed: int = 0, device: str = "cpu") -> Loaded:
        self.check_device(device)
        ort = self.module()
        options = self._options(threads)
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        session = ort.InferenceSession(path, sess_options=options, providers=providers)
        used = list(session.get_providers())
        if device == "cuda" and "CUDAExecutionProvider" not in used:
            # onnxruntime falls back to CPU with only a log line when CUDA or cuDNN libraries are missing.
            raise DeviceUnavailable(
                f"onnxruntime could not start its CUDAExecutionProvider for {path} (session providers: "
                f"{', '.join(used)}): check the CUDA and cuDNN libraries onnxruntime-gpu {ort.__version__} needs"
            )
        names = [i.name for i in session.get_inputs()]
        _check_count(path, len(names), len(inputs))
        feeds = dict(zip(names, make_inputs(inputs, seed)))
        if device == "cuda":
            return Loaded(
                lambda: session.run(None, feeds), info={"providers": used, "io": "run"},
                feed=lambda arrays: feeds.update(zip(names, arrays)),
            )  # fmt: skip
        # On the CPU, inputs and outputs are bound once: session.run would copy every output into a new
        # numpy array on each call, a host-side cost no deployed graph pays and one that grows with the
        # output's size (it would make small ops look slower than they are).
        binding = session.io_binding()

        def bind(arrays: Sequence[np.ndarray]) -> None:
            for name, array in zip(names, arrays):
                binding.bind_cpu_input(name, array)  # the array itself, not a copy: the caller keeps it alive

        bind(list(feeds.values()))
        for output in session.get_outputs():
            binding.bind_output(output.name, "cpu")
        info = {"providers": used, "io": "binding"}
        return Loaded(lambda: session.run_with_iobinding(binding), info=info, feed=bind)

    def _options(self, threads: int) -> Any:
        """The session options every measurement uses (and the runtime graph's capture, to see the same graph)."""
        ort = self.module()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        return options

    def runtime_graph(
        self, path: str, inputs: Sequence[InputSpec], threads: int, seed: int, rule: GraphRule
    ) -> dict[str, Any]:
        ort = self.module()
        names = [i.name for i in ort.InferenceSession(path, providers=["CPUExecutionProvider"]).get_inputs()]
        _check_count(path, len(names), len(inputs))
        feeds = dict(zip(names, make_inputs(inputs, seed)))
        return capture_onnxruntime(ort, path, lambda: self._options(threads), feeds, rule)


class LiteRTBackend(Backend):
    """LiteRT (TensorFlow Lite) interpreter from ai_edge_litert, else tflite_runtime."""

    name = "litert"
    modules = ("ai_edge_litert", "tflite_runtime")

    def module_name(self) -> str:
        found = [name for name in self.modules if importlib.util.find_spec(name) is not None]
        return found[0] if found else self.modules[0]

    def module(self) -> Any:
        name = self.module_name()
        if importlib.util.find_spec(name) is None:
            raise RuntimeNotInstalled(
                "litert is not installed on the device: pip install ai-edge-litert (or tflite-runtime)"
            )
        return importlib.import_module(name)

    def load(self, path: str, inputs: Sequence[InputSpec], threads: int, seed: int = 0, device: str = "cpu") -> Loaded:
        self.check_device(device)
        interpreter_cls = importlib.import_module(self.module().__name__ + ".interpreter").Interpreter
        interpreter = interpreter_cls(model_path=path, num_threads=threads)
        details = interpreter.get_input_details()
        _check_count(path, len(details), len(inputs))
        resized = False
        for detail, spec in zip(details, inputs):
            if tuple(int(d) for d in detail["shape"]) != tuple(spec.shape):
                interpreter.resize_tensor_input(detail["index"], list(spec.shape))
                resized = True
        interpreter.allocate_tensors()
        if resized:
            details = interpreter.get_input_details()
        # A fully quantised model (the LiteRT quantizer's int8) declares int8 inputs: it gets data of that type.
        from .job import InputSpec

        declared = [InputSpec(spec.shape, np.dtype(detail["dtype"]).name) for detail, spec in zip(details, inputs)]

        def set_inputs(arrays: Sequence[np.ndarray]) -> None:
            for detail, array in zip(details, arrays):
                interpreter.set_tensor(detail["index"], array)

        set_inputs(make_inputs(declared, seed))
        # Inputs are set once: a call is invoke() alone, the interpreter keeps its input buffers.
        return Loaded(interpreter.invoke, feed=set_inputs)


class TorchBackend(Backend):
    """A ``.pt2`` program saved with torch.export.save, run in inference mode.

    On cuda the program and its inputs are moved to the GPU once, and each
    block is timed with CUDA events (:class:`~hwlab_runner.gpu.CudaEventTimer`).
    """

    name = "torch"
    devices = ("cpu", "cuda")

    def module(self) -> Any:
        return _import("torch", "torch")

    def check_device(self, device: str) -> None:
        super().check_device(device)
        if device == "cuda":
            torch_cuda(self.module())

    def load(self, path: str, inputs: Sequence[InputSpec], threads: int, seed: int = 0, device: str = "cpu") -> Loaded:
        self.check_device(device)
        torch = self.module()
        torch.set_num_threads(threads)
        with contextlib.suppress(RuntimeError):
            # Allowed only before the first parallel work of the process.
            torch.set_num_interop_threads(1)
        program = torch.export.load(path)
        tensors = [torch.from_numpy(a) for a in make_inputs(inputs, seed)]
        target = "cuda" if device == "cuda" else "cpu"

        def feed(arrays: Sequence[np.ndarray]) -> None:
            tensors[:] = [torch.from_numpy(a).to(target) for a in arrays]

        if device != "cuda":
            module = program.module()
            return Loaded(lambda: module(*tensors), context=torch.inference_mode, feed=feed)
        # The pass (torch >= 2.6) also rewrites device arguments baked into the graph; .to() misses those.
        try:
            move = importlib.import_module("torch.export.passes").move_to_device_pass
        except (ImportError, AttributeError):
            move = None
        module = move(program, "cuda").module() if move else program.module().to("cuda")
        tensors = [t.to("cuda") for t in tensors]

        def run() -> object:
            return module(*tensors)

        info = {"gpu": torch.cuda.get_device_name(torch.cuda.current_device())}
        return Loaded(run, torch.inference_mode, CudaEventTimer(torch, run), "cuda_event", info, feed)


BACKENDS: dict[str, Backend] = {b.name: b for b in (OnnxRuntimeBackend(), LiteRTBackend(), TorchBackend())}


def get_backend(name: str) -> Backend:
    """The backend called ``name``; KeyError lists the known ones."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise KeyError(f"unknown runtime {name!r}: expected one of {', '.join(sorted(BACKENDS))}") from None
