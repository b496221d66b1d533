"""Registry of inference runtimes: each knows its version and how to load a model.

Runtimes are imported lazily, inside the backend that needs them, so a device
only needs the one runtime its job names. A runtime that is not installed
raises :class:`RuntimeNotInstalled`, whose message says how to install it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Sequence

import numpy as np

if TYPE_CHECKING:
    from .job import InputSpec


class RuntimeNotInstalled(RuntimeError):
    """The runtime a job asks for cannot be imported on this device."""


class Loaded:
    """A loaded model with fixed inputs: calling it runs one inference.

    ``context()`` is entered once around warm-up and sampling (torch's
    inference mode), so its cost is not paid on every call.
    """

    def __init__(self, run: Callable[[], object], context: Callable[[], ContextManager[Any]] | None = None):
        self._run = run
        self._context = context or contextlib.nullcontext

    def __call__(self) -> object:
        return self._run()

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

    def probe(self) -> tuple[str, str] | None:
        """:meth:`identify`, or None when the runtime cannot be imported; never raises."""
        try:
            return self.identify()
        except Exception:
            return None

    def load(self, path: str, inputs: Sequence[InputSpec], threads: int, seed: int = 0) -> Loaded:
        raise NotImplementedError


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime, CPU execution provider, sequential execution, ``threads`` intra-op threads."""

    name = "onnxruntime"

    def module(self) -> Any:
        return _import("onnxruntime", "onnxruntime")

    def load(self, path: str, inputs: Sequence[InputSpec], threads: int, seed: int = 0) -> Loaded:
        ort = self.module()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        _check_count(path, len(names), len(inputs))
        feeds = dict(zip(names, make_inputs(inputs, seed)))
        return Loaded(lambda: session.run(None, feeds))


class LiteRTBackend(Backend):
    """LiteRT (TensorFlow Lite) interpreter from ai_edge_litert, else tflite_runtime."""

    name = "litert"
    modules = ("ai_edge_litert", "tflite_runtime")

    def module(self) -> Any:
        for name in self.modules:
            if importlib.util.find_spec(name) is not None:
                return importlib.import_module(name)
        raise RuntimeNotInstalled(
            "litert is not installed on the device: pip install ai-edge-litert (or tflite-runtime)"
        )

    def load(self, path: str, inputs: Sequence[InputSpec], threads: int, seed: int = 0) -> Loaded:
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
        for detail, array in zip(details, make_inputs(inputs, seed)):
            interpreter.set_tensor(detail["index"], array)
        # Inputs are set once: a call is invoke() alone, the interpreter keeps its input buffers.
        return Loaded(interpreter.invoke)


class TorchBackend(Backend):
    """A ``.pt2`` program saved with torch.export.save, run in inference mode."""

    name = "torch"

    def module(self) -> Any:
        return _import("torch", "torch")

    def load(self, path: str, inputs: Sequence[InputSpec], threads: int, seed: int = 0) -> Loaded:
        torch = self.module()
        torch.set_num_threads(threads)
        with contextlib.suppress(RuntimeError):
            # Allowed only before the first parallel work of the process.
            torch.set_num_interop_threads(1)
        module = torch.export.load(path).module()
        tensors = [torch.from_numpy(a) for a in make_inputs(inputs, seed)]
        return Loaded(lambda: module(*tensors), context=torch.inference_mode)


BACKENDS: dict[str, Backend] = {b.name: b for b in (OnnxRuntimeBackend(), LiteRTBackend(), TorchBackend())}


def get_backend(name: str) -> Backend:
    """The backend called ``name``; KeyError lists the known ones."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise KeyError(f"unknown runtime {name!r}: expected one of {', '.join(sorted(BACKENDS))}") from None
