"""
The public surface: one sorted __all__, a documented error tree, typed package.
"""

from __future__ import annotations

import importlib.resources

import pytest

import vobiz_async


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted, and every name in it is importable from the package."""
    assert vobiz_async.__all__ == sorted(vobiz_async.__all__)
    for name in vobiz_async.__all__:
        assert hasattr(vobiz_async, name), name


def test_issue_contract_names_are_public() -> None:
    """The names other code relies on are exported under these exact spellings."""
    contract = {
        "AsyncVobiz",
        "Stream",
        "AllStreams",
        "Recording",
        "Outcome",
        "RetryPolicy",
        "StopResult",
        "BulkReport",
        "VobizError",
        "APIStatusError",
        "BadRequestError",
        "AuthenticationError",
        "PermissionDeniedError",
        "NotFoundError",
        "RateLimitError",
        "ServerError",
        "APIConnectionError",
        "APITimeoutError",
        "InvalidTargetError",
    }
    assert contract <= set(vobiz_async.__all__)


def test_public_classes_print_under_the_package_name() -> None:
    """Tracebacks say vobiz_async.RateLimitError, not vobiz_async._exceptions.RateLimitError."""
    assert vobiz_async.RateLimitError.__module__ == "vobiz_async"
    assert vobiz_async.AsyncVobiz.__module__ == "vobiz_async"


@pytest.mark.parametrize(
    ("child", "parent"),
    [
        pytest.param(vobiz_async.BadRequestError, vobiz_async.APIStatusError, id="400"),
        pytest.param(vobiz_async.AuthenticationError, vobiz_async.APIStatusError, id="401"),
        pytest.param(vobiz_async.PermissionDeniedError, vobiz_async.APIStatusError, id="403"),
        pytest.param(vobiz_async.NotFoundError, vobiz_async.APIStatusError, id="404"),
        pytest.param(vobiz_async.RateLimitError, vobiz_async.APIStatusError, id="429"),
        pytest.param(vobiz_async.ServerError, vobiz_async.APIStatusError, id="5xx"),
        pytest.param(vobiz_async.APITimeoutError, vobiz_async.APIConnectionError, id="timeout"),
        pytest.param(vobiz_async.APIStatusError, vobiz_async.VobizError, id="status"),
        pytest.param(vobiz_async.APIConnectionError, vobiz_async.VobizError, id="connection"),
        pytest.param(vobiz_async.InvalidTargetError, vobiz_async.VobizError, id="invalid"),
        pytest.param(vobiz_async.InvalidTargetError, ValueError, id="invalid-valueerror"),
        pytest.param(vobiz_async.ConfigurationError, ValueError, id="config-valueerror"),
        pytest.param(vobiz_async.ClientClosedError, RuntimeError, id="closed-runtimeerror"),
        pytest.param(vobiz_async.EventLoopError, RuntimeError, id="event-loop-runtimeerror"),
        pytest.param(vobiz_async.EventLoopError, vobiz_async.VobizError, id="event-loop"),
    ],
)
def test_error_tree(child: type[Exception], parent: type[Exception]) -> None:
    """One except clause per family catches what it should."""
    assert issubclass(child, parent)


def test_package_is_typed() -> None:
    """py.typed ships, so users' mypy checks their calls against our annotations."""
    assert (importlib.resources.files("vobiz_async") / "py.typed").is_file()
