"""What a device is, as a profile and ``hwlab doctor`` need to know it.

The runner's ``facts`` command describes any device with Python. A device that has
TFLite's ``benchmark_model`` measures litert with that binary, so its litert entry
is the binary's; a phone without Python is described by its shell instead.
"""

from __future__ import annotations

from typing import Any

from hwlab.errors import RunnerError
from hwlab.measure.benchmark_model.shell_facts import shell_facts
from hwlab.measure.deploy import Deployer


def device_facts(deployer: Deployer) -> dict[str, Any]:
    """The device's facts in the runner's ``facts`` shape, whichever way the device can give them."""
    binary = deployer.device.benchmark_model
    if not binary:
        return deployer.facts()
    by_shell = shell_facts(deployer.transport, binary)
    try:
        facts = deployer.facts()
    except RunnerError:
        return by_shell
    facts.setdefault("runtimes", {})["litert"] = by_shell["runtimes"]["litert"]
    return facts
