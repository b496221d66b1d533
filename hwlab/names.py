"""Names that become paths or reach a token expansion, checked in one place when they enter hwlab.

* A **name** (a device, a backend folder, a table) becomes one path segment: letters,
  digits, ``.``, ``_`` and ``-``, starting with a letter or digit, so ``..`` or ``a/b``
  can never leave the folder it is joined to. :func:`inside` checks the joined path too.
* A **host** (an SSH host name or ``~/.ssh/config`` alias, an IPv4 or IPv6 literal) and a
  **user** reach ``~/.ssh/config`` token expansion (``Match exec "... %h"`` runs a shell):
  like OpenSSH since 9.6 (the fix of CVE-2023-51385), shell metacharacters are refused.
* An **adb serial** is a USB serial or ``host:port``.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from hwlab.errors import InvalidRequest

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
HOST = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252}[A-Za-z0-9_])?")  # DNS labels and ssh_config aliases
USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
SERIAL = re.compile(r"[A-Za-z0-9._:\[\]-]{1,128}")
SCOPE = re.compile(r"[A-Za-z0-9_.-]{1,32}")  # an IPv6 zone: an interface name or index


def name_problem(value: object) -> str | None:
    """Why ``value`` cannot be a name (None when it can)."""
    if not isinstance(value, str) or not NAME.fullmatch(value):
        return (
            f"{value!r} is not a safe name: use letters, digits, '.', '_' and '-' (up to 128, starting with a letter"
            " or digit; no '/', no '..')"
        )
    return None


def host_problem(value: object) -> str | None:
    """Why ``value`` cannot be an SSH host (None when it can): a name, an alias, or an IP literal."""
    if not isinstance(value, str):
        return f"{value!r} is not a host name"
    literal = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        address = ipaddress.ip_address(literal)
    except ValueError:
        address = None
    if address is not None:
        # Python accepts any text after an IPv6 literal's '%' (its zone), shell characters included.
        scope = getattr(address, "scope_id", None)
        if scope is None or SCOPE.fullmatch(scope):
            return None
    if HOST.fullmatch(value) and ".." not in value:
        return None
    return (
        f"{value!r} is not a host name, ~/.ssh/config alias or IP address (letters, digits, '.', '-', '_'):"
        " shell characters in a host could run commands through ~/.ssh/config's Match exec"
    )


def user_problem(value: object) -> str | None:
    if isinstance(value, str) and USER.fullmatch(value):
        return None
    return f"{value!r} is not a user name (letters, digits, '.', '_', '-'; no shell characters)"


def serial_problem(value: object) -> str | None:
    if isinstance(value, str) and SERIAL.fullmatch(value):
        return None
    return f"{value!r} is not an adb serial (a USB serial as `adb devices -l` shows it, or host:port)"


def inside(root: Path, *parts: str) -> Path:
    """``root/parts...``, which must stay inside ``root`` once resolved (a link may not lead out either)."""
    base = Path(root).resolve()
    path = base.joinpath(*parts).resolve()
    if path != base and base not in path.parents:
        raise InvalidRequest(
            f"{'/'.join(parts)!r} leads outside {root}", hint="give a name inside the folder (no '..', no links out)"
        )
    return path
