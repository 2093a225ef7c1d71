"""A limit on failed console sign-ins per client address.

After ``MAX_FAILURES`` failed sign-ins within ``WINDOW_S`` seconds from one address, that address
is locked out for ``LOCKOUT_S`` seconds: its sign-ins are answered 429 without the token being
looked at (so even the right token is refused until then). A successful sign-in before that
forgets the address's failures.

The counts live in memory, in each server process on its own: with several processes an address
gets ``MAX_FAILURES`` tries in each of them, and a restart forgets everything. Memory is bounded:
an address is forgotten once its failures are older than the window and any lockout is over, and
at most ``MAX_ADDRESSES`` are kept (a flood of distinct addresses evicts the least recently seen).

The address is the peer of the TCP connection, unless that peer is a trusted proxy
(``VOICEPROMPT_TRUSTED_PROXIES``, by default this machine: the agent of a tunnel such as ngrok or
cloudflared connects from loopback): then it is the nearest untrusted address in
``X-Forwarded-For``, read from the right (entries further left were written by the client, who
can write anything). Without that, every client behind the tunnel would share one count, and five
bad guesses from anyone would lock everyone out.
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

# The time source; monotonic so a wall-clock change cannot end or extend a lockout (tests
# replace it to move time on without sleeping).
clock = time.monotonic

log = logging.getLogger("voiceprompt.console")


@dataclass
class _Address:
    failures: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_FAILURES))
    locked_until: float = 0.0
    warned: bool = True  # the current lockout (if any) has been logged

    def expires(self) -> float:
        """When this entry stops mattering: its lockout is over and its failures have aged out."""
        last = self.failures[-1] + WINDOW_S if self.failures else 0.0
        return max(self.locked_until, last)


class SignInThrottle:
    """Failed sign-ins by client address (see the module docstring).

    ``attempt`` counts a sign-in as failed *before* its token is checked (the check awaits the
    database), and ``succeeded`` takes that back: so a burst of concurrent guesses from one
    address gets no more than ``MAX_FAILURES`` tokens checked either.
    """

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

    def attempt(self, address: str) -> float | None:
        """Before a token is checked: seconds to wait if ``address`` is locked out (nothing is
        counted then), else None, with the attempt counted as a failure until ``succeeded``.
        The attempt that reaches the limit locks the address out."""
        wait = self.locked_for(address)
        if wait is not None:
            return wait
        now = clock()
        self._sweep(now)
        entry = self._addresses.pop(address, None) or _Address()
        self._addresses[address] = entry  # (re)inserted at the end: the most recently touched
        while entry.failures and entry.failures[0] <= now - WINDOW_S:
            entry.failures.popleft()
        entry.failures.append(now)
        if len(entry.failures) >= MAX_FAILURES:
            entry.failures.clear()  # after the lockout the address starts afresh
            entry.locked_until = now + LOCKOUT_S
            entry.warned = False
        while len(self._addresses) > MAX_ADDRESSES:
            self._addresses.popitem(last=False)
        return None

    def failed(self, address: str) -> None:
        """The token was wrong: the attempt stays counted; a lockout it began is logged."""
        entry = self._addresses.get(address)
        if entry is not None and not entry.warned and entry.locked_until > clock():
            entry.warned = True
            log.warning(
                "console sign-in locked for %s: %d failed sign-ins within %d s; "
                "refusing its sign-ins for %d s",
                address,
                MAX_FAILURES,
                WINDOW_S,
                LOCKOUT_S,
            )

    def succeeded(self, address: str) -> None:
        """A successful sign-in forgets the address's failures (its own attempt included)."""
        self._addresses.pop(address, None)

    def _sweep(self, now: float) -> None:
        while self._addresses:
            entry = next(iter(self._addresses.values()))
            if entry.expires() > now:
                break
            self._addresses.popitem(last=False)


throttle_key = web.AppKey("console_sign_in_throttle", SignInThrottle)


def client_address(request: web.Request, trusted: Sequence[IPNetwork] = ()) -> str:
    """The address sign-ins are counted by (see the module docstring)."""
    return client_from(request.remote, request.headers.getall("X-Forwarded-For", []), trusted)


def client_from(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]
) -> str:
    """The peer, or behind trusted proxies the first untrusted address from the right of
    ``X-Forwarded-For`` (all its headers, in order)."""
    if peer is None:
        return "unknown"
    if not _is_trusted(peer, trusted):
        return peer
    hops = [h.strip() for value in forwarded_for for h in value.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop if _is_ip(hop) else peer  # garbage is not an address to count by
    return peer


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_trusted(address: str, trusted: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)
