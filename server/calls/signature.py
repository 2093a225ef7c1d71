"""Twilio webhook signatures (``X-Twilio-Signature``), checked with the official RequestValidator.

Twilio signs the exact URL it requested plus the POST parameters. Behind a proxy or a tunnel the
app sees another scheme, host and port, so the URL is rebuilt from the public base URL
(``VOICEPROMPT_PUBLIC_URL``) and the request's raw path and query, never from what the app sees.
In aiohttp pass ``request.raw_path`` (the request target as sent, still percent-encoded):
``request.path_qs`` is re-serialised by yarl and may not match byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol
from urllib.parse import urlsplit

from twilio.request_validator import RequestValidator

__all__ = ["SIGNATURE_HEADER", "Params", "expected_url", "is_valid", "sign"]

SIGNATURE_HEADER = "X-Twilio-Signature"


class _MultiMapping(Protocol):
    """aiohttp/multidict's MultiDictProxy and the like: one name, several values."""

    def getall(self, key: str) -> list[str]: ...

    def __iter__(self) -> Iterator[str]: ...


# A plain mapping (one value per name), a mapping to value lists (parse_qs), or a multidict.
Params = Mapping[str, str] | Mapping[str, Sequence[str]] | _MultiMapping


class _Values:
    """Every value of every name, in the shape RequestValidator reads (``getall``)."""

    def __init__(self, params: Params) -> None:
        self._values: dict[str, list[str]] = {}
        getall = getattr(params, "getall", None)
        for name in params:
            if getall is not None:
                values = list(getall(name))
            else:
                value = params[name]  # type: ignore[index]
                values = [value] if isinstance(value, str) else list(value)
            if not all(isinstance(v, str) for v in values):
                raise TypeError(f"parameter {name!r} has a value that is not a string")
            self._values[name] = values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def getall(self, name: str) -> list[str]:
        return self._values[name]


def expected_url(public_url: str, path_qs: str) -> str:
    """The URL Twilio signed: the public base URL joined with the path and query as received.

    ``public_url`` may carry a path prefix ("https://example.com/vp") that the proxy strips before
    the app sees the request; if the app sees the prefix itself, it is not added twice. Scheme,
    host and port are kept exactly as configured: the call URLs Twilio signs were built from the
    same setting, and the validator accepts the default port both written and omitted.
    """
    parts = urlsplit(public_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"public URL {public_url!r} is not an absolute http(s) URL")
    if parts.query or parts.fragment:
        raise ValueError(f"public URL {public_url!r} must not have a query or fragment")
    base = public_url.rstrip("/")
    prefix = parts.path.rstrip("/")
    target = path_qs if path_qs.startswith("/") else f"/{path_qs}"
    if prefix and (target == prefix or target.startswith((f"{prefix}/", f"{prefix}?"))):
        target = target[len(prefix) :]
    return base + target


def is_valid(
    auth_token: str,
    url: str,
    params: Params,
    signature: str | None,
    *,
    algorithm: str | None = None,
) -> bool:
    """True when ``signature`` is Twilio's for this URL and these POST parameters.

    A missing signature or an empty token is never valid (an empty key would let anyone sign).
    For GET webhooks pass ``{}``: the parameters are already in the URL. ``algorithm`` comes from
    ``twilio.request_validator.get_signature_algorithm`` when Twilio sends the signature-settings
    header; None is the Auth Token's HMAC-SHA1. Malformed input is invalid rather than an error:
    the caller answers 403 either way.
    """
    if not signature or not auth_token:
        return False
    try:
        validator = RequestValidator(auth_token)
        values = _Values(params)
        if algorithm is None:
            return bool(validator.validate(url, values, signature))
        return bool(validator.validate(url, values, signature, algorithm=algorithm))
    except (TypeError, ValueError, AttributeError):
        return False


def sign(auth_token: str, url: str, params: Params, *, algorithm: str | None = None) -> str:
    """The signature Twilio would send, for tests and tools (e.g. replaying a webhook by hand)."""
    validator = RequestValidator(auth_token)
    values = _Values(params)
    if algorithm is None:
        return str(validator.compute_signature(url, values))
    return str(validator.compute_signature(url, values, algorithm=algorithm))
