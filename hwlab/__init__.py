"""hwlab: a hardware-aware latency lab.

Profile operators on real devices into lookup tables, predict model latency
from them, and search architectures under a device's latency budget.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hwlab")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

__all__ = ["__version__", "predict"]


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    """``hwlab.predict(model, device=..., backend=...)`` without importing torch at ``import hwlab``."""
    if name == "predict":
        from hwlab.predictors.predictor import predict

        return predict
    raise AttributeError(f"module 'hwlab' has no attribute {name!r}")
