"""
Batch-wide brakes: errors that concern every target of a batch, not just one.
"""

from __future__ import annotations

from .._exceptions import (
    APIConnectError,
    APIStatusError,
    AuthenticationError,
    TLSCertificateError,
    VobizError,
)
from .._retry import RETRYABLE_STATUSES

__all__ = ["CONNECT_FAILURES_TO_BRAKE", "Brakes"]

#: Failed connections, with no answer yet in the batch, that mean "wrong address".
CONNECT_FAILURES_TO_BRAKE = 3


class Brakes:
    """
    Stops a batch from sending what is bound to fail.

    - A 401: every later request would be refused too.
    - A Retry-After longer than ``max_retry_after``: the server asks for more
      patience than the policy has.
    - Connections failing (refused, DNS, TLS) before anything in the batch got
      an answer: a wrong base URL, a proxy or a VPN that is down. Once anything
      has been answered, an outage is retried as any other failure is.

    Once on, every target not yet sent fails with a copy of the error that
    tripped it, and retries already under way stop at their next attempt.
    """

    def __init__(self, *, max_retry_after: float) -> None:
        self._max_retry_after = max_retry_after
        self._answered = False
        self._connect_failures = 0
        #: The error that stopped the batch, and why, once a brake is on.
        self.tripped: VobizError | None = None
        self.why = ""

    def saw(self, error: VobizError | None) -> None:
        """
        Take note of how a sent request went (``error`` None: it was answered).
        """
        if error is None or isinstance(error, APIStatusError):
            self._answered = True
        if self.tripped is not None or error is None:
            return
        if isinstance(error, AuthenticationError):
            self._trip(
                error,
                "the API refused this batch's credentials (401); "
                "check VOBIZ_AUTH_ID and VOBIZ_AUTH_TOKEN",
            )
        elif (
            isinstance(error, APIStatusError)
            and error.status_code in RETRYABLE_STATUSES
            and error.retry_after is not None
            and error.retry_after > self._max_retry_after
        ):
            self._trip(
                error,
                f"the server asked this batch to wait {error.retry_after:g}s, longer than "
                f"max_retry_after={self._max_retry_after:g}s",
            )
        elif isinstance(error, APIConnectError) and not self._answered:
            self._connect_failures += 1
            if (
                isinstance(error, TLSCertificateError)
                or self._connect_failures >= CONNECT_FAILURES_TO_BRAKE
            ):
                self._trip(
                    error,
                    "nothing in this batch could connect; check the base URL, DNS, "
                    "any proxy and the network",
                )

    def _trip(self, error: VobizError, why: str) -> None:
        self.tripped = error
        self.why = why

    def stopped(self, *, sent: bool) -> VobizError | None:
        """
        The error for a target stopped by the brake (``sent``: it had sent before); None if off.
        """
        if self.tripped is None:
            return None
        return self.tripped.stopped_by_brake(self.why, sent=sent)
