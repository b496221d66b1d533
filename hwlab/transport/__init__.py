"""Transports: how hwlab reaches a device. Local, SSH and ADB share one protocol (base.py)."""

from __future__ import annotations

from hwlab.errors import TransportError
from hwlab.inventory import DeviceSpec
from hwlab.transport.base import Completed, LineStream, Transport, shell_join
from hwlab.transport.local import LocalTransport

__all__ = ["Completed", "LineStream", "LocalTransport", "Transport", "connect", "shell_join", "ssh_target"]


def ssh_target(device: DeviceSpec):  # type: ignore[no-untyped-def]
    """The SSH endpoint of an inventory entry, merged with ~/.ssh/config."""
    from hwlab.transport.ssh import SshTarget

    assert device.host is not None  # the inventory requires it for ssh
    return SshTarget.resolve(
        device.host, port=device.port, user=device.user, key_file=device.key_file, known_hosts=device.known_hosts
    )


def connect(device: DeviceSpec) -> Transport:
    """Open the transport the inventory names for this device (never for an example entry).

    Connections are lazy: the first command connects, so errors surface with the
    command that needed the device.
    """
    if device.example:
        raise TransportError(
            f"device {device.name!r} is an example inventory ({device.source})",
            hint="copy it, fill in your device's address and remove `example: true`",
        )
    if device.transport == "ssh":
        from hwlab.transport.ssh import SshTransport

        return SshTransport(ssh_target(device), device=device.name, connect_timeout=float(device.connect_timeout_s))
    if device.transport == "adb":
        from hwlab.transport.adb import AdbTransport

        assert device.serial is not None  # the inventory requires it for adb
        return AdbTransport(device.serial)
    return LocalTransport()
