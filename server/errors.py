"""Errors of the server package, translated to HTTP statuses or exit codes only at the edges.

ServerError
 +-- ConfigError        bad setting (exit 2 at start)
 +-- NotFound           a tenant, reminder or clip that does not exist (404)
 +-- ValidationError    bad input, names the field (422)
 +-- Forbidden          a key that may not see this (403)
"""

from __future__ import annotations


class ServerError(Exception):
    status = 500


class ConfigError(ServerError):
    status = 500


class NotFound(ServerError):
    status = 404


class ValidationError(ServerError):
    """Bad input; ``field`` names the offending field so clients can show it next to it."""

    status = 422

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class Forbidden(ServerError):
    status = 403
