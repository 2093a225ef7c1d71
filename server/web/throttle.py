"""A limit on failed sign-ins per client address: console sign-ins and REST API bearer tokens.

After ``MAX_FAILURES`` failures within ``WINDOW_S`` seconds from one address, that address is
locked out for ``LOCKOUT_S`` seconds: the console answers its sign-ins 429 without looking at the
token (so even the right token is refused until then), and the API answers its requests 429.
A success does not forgive earlier failures, or a tenant could guess other tokens between
sign-ins with its own key; failures only age out of the window.

The console also bounds concurrency: a sign-in counts against the limit while its token is being
checked (the check awaits the database), so a burst of simultaneous guesses gets no more than
``MAX_FAILURES`` tokens checked. The API does not (an integration may send many requests at once;
its first burst of wrong tokens is checked in full, then the address is locked out).

The counts live in memory, in each server process on its own: with several processes an address
gets ``MAX_FAILURES`` tries in each of them, and a restart forgets everything. Memory is bounded:
an address is forgotten once its failures are older than the window and any lockout is over, and
at most ``MAX_ADDRESSES`` are kept (a flood of distinct addresses evicts the least recently seen).

The address is the peer of the TCP connection, unless that peer is a trusted proxy
(``VOICEPROMPT_TRUSTED_PROXIES``, by default this machine: the agent of a tunnel such as ngrok or
cloudflared connects from loopback): then it is the nearest untrusted address in
``X-Forwarded-For``, read from the right (entries further left were written by the client, who
can write anything). An IPv6 client is counted by its /64, which one subscriber usually holds
whole. Trusted networks must not contain clients: an address inside one cannot be told from its
proxies and could name any address it likes.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiohttp import web

from server.settings import IPNetwork

MAX_FAILURES = 5
WINDOW_S = 300.0
LOCKOUT_S = 300.0
MAX_ADDRESSES = 10_000
# A console sign-in refused while others from its address are still being checked.
BUSY_RETRY_S = 1.0

# The time source; monotonic so a wall-clock change cannot end or extend a lockout (tests
# replace it to move time on without sleeping).
clock = time.monotonic

log = logging.getLogger("voiceprompt.auth")


@dataclass
class _Address:
    failures: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_FAILURES))
    checking: int = 0  # console sign-ins whose token is being checked now
    locked_until: float = 0.0

    def expires(self) -> float:
        """When this entry stops mattering: nothing in flight, its lockout over and its
        failures aged out."""
        if self.checking:
            return float("inf")
        last = self.failures[-1] + WINDOW_S if self.failures else 0.0
        return max(self.locked_until, last)


class SignInThrottle:
    """Failed sign-ins by client address (see the module docstring)."""

    def __init__(self) -> None:
        # Least recently touched first, so expired entries are found at the front.
        self._addresses: OrderedDict[str, _Address] = OrderedDict()

    def __len__(self) -> int:
        return len(self._addresses)

    def locked_for(self, address: str) -> float | None:
        """Seconds until ``address`` may try again, or None if it may try now."""
        entry = self._addresses.get(address)
        if entry is None:
            return None
        left = entry.locked_until - clock()
        return left if left > 0 else None

    def reserve(self, address: str) -> float | None:
        """Before a console sign-in's token is checked: seconds to wait (locked out, or as many
        checks in flight as failures left), else None and the check is counted until
        ``failed`` or ``release``."""
        wait = self.locked_for(address)
        if wait is not None:
            return wait
        now = clock()
        entry = self._touch(address, now)
        while entry.failures and entry.failures[0] <= now - WINDOW_S:
            entry.failures.popleft()
        if len(entry.failures) + entry.checking >= MAX_FAILURES:
            return BUSY_RETRY_S
        entry.checking += 1
        return None

    def release(self, address: str) -> None:
        """A reserved check ended without a wrong token (it succeeded, or could not run)."""
        entry = self._addresses.get(address)
        if entry is not None and entry.checking:
            entry.checking -= 1

    def failed(self, address: str, *, reserved: bool = False) -> None:
        """A wrong token from ``address``; the one that reaches the limit locks it out."""
        now = clock()
        entry = self._touch(address, now)
        if reserved and entry.checking:
            entry.checking -= 1
        while entry.failures and entry.failures[0] <= now - WINDOW_S:
            entry.failures.popleft()
        entry.failures.append(now)
        if len(entry.failures) >= MAX_FAILURES and entry.locked_until <= now:
            entry.failures.clear()  # after the lockout the address starts afresh
            entry.locked_until = now + LOCKOUT_S
            log.warning(
                "sign-ins locked for %s: %d failed within %d s; refusing them for %d s",
                address,
                MAX_FAILURES,
                WINDOW_S,
                LOCKOUT_S,
            )

    def _touch(self, address: str, now: float) -> _Address:
        self._sweep(now)
        entry = self._addresses.pop(address, None) or _Address()
        self._addresses[address] = entry  # (re)inserted at the end: the most recently touched
        while len(self._addresses) > MAX_ADDRESSES:
            self._addresses.popitem(last=False)
        return entry

    def _sweep(self, now: float) -> None:
        """Forget addresses at the front (least recently touched) that no longer matter."""
        while self._addresses:
            entry = next(iter(self._addresses.values()))
            if entry.expires() > now:
                break
            self._addresses.popitem(last=False)


def client_address(request: web.Request, trusted: Sequence[IPNetwork] = ()) -> str:
    """The address sign-ins are counted by (see the module docstring)."""
    return client_from(request.remote, request.headers.getall("X-Forwarded-For", []), trusted)


def client_from(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]
) -> str:
    """The peer, or behind trusted proxies the first untrusted address from the right of
    ``X-Forwarded-For`` (all its headers, in order); normalised, IPv6 as its /64."""
    ip = _parse(peer or "")
    if ip is None:
        return peer or "unknown"
    if _is_trusted(ip, trusted):
        hops = [h for value in forwarded_for for h in value.split(",") if h.strip()]
        for hop in reversed(hops):
            hop_ip = _parse(hop)
            if hop_ip is None:
                break  # garbage is no address to count by: the proxy's own stands
            if not _is_trusted(hop_ip, trusted):
                return _key(hop_ip)
    return _key(ip)


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse(text: str) -> Address | None:
    """An address as proxies write it: ``1.2.3.4``, ``1.2.3.4:5678``, ``2001:db8::1`` or
    ``[2001:db8::1]:443``."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        text = text[1:end] if end > 0 else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]  # IPv4 with a port
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])  # no IPv6 zone ("%eth0")
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # "::ffff:1.2.3.4" from a dual-stack socket
    return ip


def _key(ip: Address) -> str:
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _is_trusted(ip: Address, trusted: Sequence[IPNetwork]) -> bool:
    return any(ip in net for net in trusted)
