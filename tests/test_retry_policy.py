"""
RetryPolicy's settings and Retry-After parsing, without any HTTP.
"""

from __future__ import annotations

import email.utils

import pytest

from vobiz_async import RetryPolicy
from vobiz_async._exceptions import parse_retry_after


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"max_attempts": 0}, id="attempts-zero"),
        pytest.param({"max_attempts": 2.5}, id="attempts-float"),
        pytest.param({"wait_initial": 0}, id="initial-zero"),
        pytest.param({"wait_max": -1}, id="max-negative"),
        pytest.param({"wait_exp_base": 0}, id="base-zero"),
        pytest.param({"wait_jitter": -0.1}, id="jitter-negative"),
        pytest.param({"max_retry_after": -1}, id="cap-negative"),
        pytest.param({"deadline": 0}, id="deadline-zero"),
    ],
)
def test_nonsense_settings_raise_value_error_naming_them(kwargs: dict[str, float]) -> None:
    """A policy that cannot work is refused when built, not when first used."""
    (name,) = kwargs
    with pytest.raises(ValueError, match=name):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_is_keyword_only_and_frozen() -> None:
    """Settings read well at the call site and cannot drift after construction."""
    with pytest.raises(TypeError):
        RetryPolicy(3)  # type: ignore[call-arg]
    policy = RetryPolicy(deadline=None)
    with pytest.raises(AttributeError):
        policy.max_attempts = 9  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, None, id="missing"),
        pytest.param("3", 3.0, id="int"),
        pytest.param(" 1.5 ", 1.5, id="float-padded"),
        pytest.param("-4", 0.0, id="negative-clamped"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("nan", None, id="nan"),
        pytest.param("inf", None, id="inf"),
        pytest.param("Wed, 21 Oct 2015 07:28:00", None, id="date-without-zone"),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    """Delta-seconds are read, garbage is None, the past is zero."""
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date() -> None:
    """An HTTP date is turned into seconds from now, on the injected wall clock."""
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after(date, now=lambda: 1_000_000.0) == 30.0
    assert parse_retry_after(date, now=lambda: 2_000_000.0) == 0.0
