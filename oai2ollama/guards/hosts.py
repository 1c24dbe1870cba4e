"""The DNS-rebinding guard: while we listen on loopback only, answer only local `Host` names.

A DNS-rebinding page reaches us under its own domain name, same-origin with us, so no Origin
check can see it; its `Host` header gives it away.
"""

from __future__ import annotations

import ipaddress
import socket

from .refusal import Refusal

# Decisions are remembered, up to this many distinct Host values.
_CACHE_SIZE = 256


def is_loopback(host: str) -> bool:
    """Whether a listen address (`--host`) reaches this machine only."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def machine_names(hostname: str | None = None) -> frozenset[str]:
    """This machine's names as a browser on it may spell them: `box`, `box.local`, `box.lan`…"""
    full = (hostname if hostname is not None else socket.gethostname()).lower().rstrip(".")
    short = full.split(".", 1)[0]
    names = {full, short, f"{full}.local", f"{short}.local"}
    names.discard("")
    return frozenset(names)


def host_name(header: str) -> str:
    """The name in a `Host` header, without port, brackets or trailing dot, lower-cased."""
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else value
    if value.count(":") == 1:  # name:port; a bare IPv6 address has several colons
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def host_allowed(header: str, names: frozenset[str]) -> bool:
    """Whether a loopback-bound server may answer a request for this `Host`: loopback and
    unspecified IPs, `localhost`, `*.localhost` and the machine's own names cannot be a rebinding
    page; nor can the names the user allows (`*.example.com` allows its subdomains)."""
    name = host_name(header)
    if not name or name == "localhost" or name.endswith(".localhost") or name in names:
        return True
    if any(allowed.startswith("*.") and name.endswith(allowed[1:]) for allowed in names):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


_TWO_HOSTS = Refusal(400, "more than one Host header")


def one_host(headers: list[tuple[bytes, bytes]]) -> Refusal | None:
    """Two `Host` headers make the request ambiguous (RFC 9112 §3.2: answer 400): which one the
    check saw and which one a later reader takes could differ."""
    seen = False
    for name, _ in headers:
        if name == b"host":
            if seen:
                return _TWO_HOSTS
            seen = True
    return None


def allowed_names(listen_host: str, allowed_hosts: list[str], hostname: str | None = None) -> frozenset[str] | None:
    """The names a Host header may carry, or None when there is no Host check: listening beyond
    loopback with no names given, where the server is meant to be reached under any name."""
    if not is_loopback(listen_host) and not allowed_hosts:
        return None
    return machine_names(hostname) | {host_name(name) for name in allowed_hosts}


class HostCheck:
    """`names`: the names allowed besides local ones, when the check is on; None: off."""

    def __init__(self, names: frozenset[str] | None):
        self.names = names
        self._decided: dict[bytes, bool] = {}

    def __call__(self, host: bytes | None) -> Refusal | None:
        if self.names is None or host is None:
            return None
        allowed = self._decided.get(host)
        if allowed is None:
            allowed = host_allowed(host.decode("latin-1"), self.names)
            if len(self._decided) < _CACHE_SIZE:
                self._decided[host] = allowed
        if allowed:
            return None
        name = host_name(host.decode("latin-1"))
        return Refusal(
            403, f"host {name!r} is not allowed while oai2ollama listens on loopback only (DNS rebinding guard)"
        )
