"""
Value checks shared by the settings, the retry policy, the targets and the fake.

Two families: attrs validators for numbers (they raise ValueError naming the
field), and the identifier and URL checks that decide what may go on the wire
(they raise InvalidTargetError, before any request exists).
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

import attrs

from ._exceptions import InvalidTargetError

__all__ = [
    "MAX_IDENTIFIER",
    "MAX_URL",
    "at_least_one",
    "check_count",
    "check_identifier",
    "check_recording_url",
    "is_loopback",
    "non_negative",
    "optional_positive",
    "positive",
    "probability",
]


def positive(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    """
    Validator: ``value > 0``.
    """
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def non_negative(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    """
    Validator: ``value >= 0``.
    """
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def optional_positive(_: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    """
    Validator: None, or ``value > 0``.
    """
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be > 0 or None, got {value!r}")


def at_least_one(_: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    """
    Validator: an int ``>= 1`` (bool is not a count).
    """
    if isinstance(value, bool) or not (isinstance(value, int) and value >= 1):
        raise ValueError(f"{attribute.name} must be an int >= 1, got {value!r}")


def probability(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    """
    Validator: ``0 <= value <= 1``.
    """
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be between 0 and 1, got {value!r}")


# Characters that would change which resource a path names, or need escaping
# that some proxy in between might undo.
_FORBIDDEN = frozenset("/\\?#% ")

#: Longest identifier sent: Vobiz's are 36-character UUIDs; far longer is a mistake.
MAX_IDENTIFIER = 256
#: Longest recording URL sent.
MAX_URL = 2048


def check_identifier(name: str, value: object) -> str:
    """
    Return ``value`` if it is safe as one path segment, else raise InvalidTargetError.
    """
    if not isinstance(value, str):
        raise InvalidTargetError(f"{name} must be a str, not {type(value).__name__}")
    if not value:
        raise InvalidTargetError(f"{name} must not be empty")
    if len(value) > MAX_IDENTIFIER:
        raise InvalidTargetError(
            f"{name} is too long: {len(value)} characters, at most {MAX_IDENTIFIER}: "
            f"{value[:40]!r}..."
        )
    if not (value.isascii() and value.isprintable()):
        raise InvalidTargetError(f"{name} must be printable ASCII: {value[:80]!r}")
    if value in (".", ".."):
        raise InvalidTargetError(f"{name} must not be {value!r}")
    if not _FORBIDDEN.isdisjoint(value):
        bad = "".join(sorted(_FORBIDDEN.intersection(value)))
        raise InvalidTargetError(f"{name} must not contain any of {bad!r}: {value[:80]!r}")
    return value


def check_count(name: str, value: object) -> int | None:
    """
    Return ``value`` if it is None or an int ``>= 0`` (a page's limit or offset), else raise.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidTargetError(f"{name} must be an int >= 0, got {value!r}")
    return value


def check_recording_url(name: str, value: object) -> str | None:
    """
    Return ``value`` if it is None or an http(s) URL with a host, else raise InvalidTargetError.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidTargetError(f"{name} must be a str, not {type(value).__name__}")
    if len(value) > MAX_URL:
        raise InvalidTargetError(
            f"{name} is too long: {len(value)} characters, at most {MAX_URL}: {value[:40]!r}..."
        )
    # urlsplit would strip these and parse what is left, but the raw value is
    # what goes in the body: " https://rec/1.mp3\n" matches no recording.
    if not value.isprintable() or any(char.isspace() for char in value):
        raise InvalidTargetError(
            f"{name} must not contain whitespace or control characters: {value[:200]!r}"
        )
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        raise InvalidTargetError(f"{name} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidTargetError(f"{name} must be an http(s) URL with a host: {value[:200]!r}")
    return value


def is_loopback(host: str) -> bool:
    """
    True for ``localhost`` and any loopback address, v4 or v6 (brackets allowed).
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
