"""Transports: how hwlab reaches a device (local now; ssh and adb share the same protocol)."""

from __future__ import annotations

from hwlab.errors import TransportError
from hwlab.inventory import DeviceSpec
from hwlab.transport.base import Completed, LineStream, Transport, shell_join
from hwlab.transport.local import LocalTransport

__all__ = ["Completed", "LineStream", "LocalTransport", "Transport", "connect", "shell_join"]


def connect(device: DeviceSpec) -> Transport:
    """Open the transport the inventory names for this device (never for an example entry)."""
    if device.example:
        raise TransportError(
            f"device {device.name!r} is an example inventory ({device.source})",
            hint="copy it, fill in your device's address and remove `example: true`",
        )
    if device.transport == "local":
        return LocalTransport()
    raise TransportError(
        f"device {device.name!r} uses the {device.transport} transport,"
        " which this hwlab version cannot drive yet",
        hint="profile the local device, or upgrade hwlab",
    )
