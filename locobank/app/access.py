"""Who may reach the app: the loopback interface by default; any other address only with a password."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from ..errors import ArgumentError

LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: addresses no other machine can reach."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_auth(auth: str | None = None, password_file: Path | None = None) -> tuple[str, str] | None:
    """``USER:PASSWORD`` (or a file whose first line is that) as (user, password); None when neither is given."""
    if auth and password_file:
        raise ArgumentError("give --auth or --password-file, not both")
    if password_file is not None:
        try:
            lines = Path(password_file).read_text().splitlines()
        except OSError as e:
            raise ArgumentError(f"cannot read the password file {password_file}: {e.strerror or e}") from e
        auth = lines[0].strip() if lines else ""
        where = f"the password file {password_file}"
    else:
        where = "--auth"
    if auth is None:
        return None
    user, sep, password = auth.partition(":")
    if not sep or not user or not password:
        raise ArgumentError(f"{where} must hold USER:PASSWORD, both non-empty")
    return user, password


def check_bind(host: str, auth: tuple[str, str] | None) -> None:
    """Refuse to listen beyond this machine without a password."""
    if not is_loopback(host) and auth is None:
        raise ArgumentError(f"--host {host} would let other machines reach the app and its catalog; give "
                            f"--auth USER:PASSWORD or --password-file FILE to require a login, or keep the "
                            f"default --host 127.0.0.1")
