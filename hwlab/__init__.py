"""hwlab: a hardware-aware latency lab.

Profile operators on real devices into lookup tables, predict model latency
from them, and search architectures under a device's latency budget.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hwlab")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
