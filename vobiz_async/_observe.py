"""
What a client tells about its own requests: the ``on_attempt`` callback and OpenTelemetry.

Both are fed by one event stream. ``Attempts`` (the retry loop) tells a
stop's ``Watch`` three things about each request it sends: it was sent
(``sending``), how it was answered (``answered``), and whether another
request follows (``decided``). On the decision the Watch has the whole
attempt: it builds one ``Attempt`` and hands it to the callback and to the
telemetry. A stop's result closes its Watch (``finished``).

With neither a callback nor OpenTelemetry, every stop gets ``NO_WATCH``,
whose methods do nothing: the clean path pays a few empty calls.
"""

from __future__ import annotations

import contextlib
import enum
import inspect
import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Self

import attrs

from ._exceptions import APIStatusError, ConfigurationError, UnexpectedResponseError
from ._redact import Redactor, shorten
from ._targets import Target

if TYPE_CHECKING:
    from ._models import StopResult
    from ._telemetry import StopTrace, Telemetry

__all__ = [
    "NO_BATCH_WATCH",
    "NO_WATCH",
    "Attempt",
    "AttemptHook",
    "BatchWatch",
    "Observers",
    "Watch",
    "check_hook",
    "error_type",
]

logger = logging.getLogger("vobiz_async")


@attrs.frozen(kw_only=True)
class Attempt:
    """
    One request a stop sent, as ``on_attempt`` sees it once its fate is known.

    It carries no headers, body or error object: nothing that could hold the token.
    """

    #: The Stream, AllStreams or Recording the request was for.
    target: Target
    #: 1 for the stop's first request, 2 for the next, ...: requests sent, re-sends included.
    number: int
    #: The answer's status, or None when there was none (timeout, connection failure).
    status_code: int | None
    #: None when the answer was a stop or a Vobiz 404; else the status as a string
    #: (``"503"``), or the error's class (``"vobiz_async.APITimeoutError"``). When
    #: ``will_retry`` is true this is also the reason.
    error_type: str | None
    #: Seconds from handing the request to the transport to its answer or failure.
    duration: float
    #: True when another request of this stop is scheduled, after ``wait`` seconds.
    #: A batch's brake or ``aclose()`` during that wait can still cancel it: the
    #: stop's result (``attempts``) says how many requests went out in the end.
    will_retry: bool
    #: Seconds the stop waits before that request (0.0 when none follows).
    wait: float


#: ``AsyncVobiz(on_attempt=...)``: a plain function, called once per stop request sent.
AttemptHook = Callable[[Attempt], object]


def check_hook(hook: object) -> AttemptHook | None:
    """
    ``on_attempt`` as given; ConfigurationError unless None or a plain (non-async) callable.
    """
    if hook is None:
        return None
    if not callable(hook):
        raise ConfigurationError(f"on_attempt must be callable, not {type(hook).__name__}")
    # An object whose __call__ is async counts too: it would return a coroutine.
    if inspect.iscoroutinefunction(hook) or inspect.iscoroutinefunction(type(hook).__call__):
        raise ConfigurationError(
            "on_attempt must be a plain function: it is called in the middle of a stop, "
            "which must not wait for it (hand the Attempt to a queue for async work)"
        )
    return hook


def error_type(error: BaseException) -> str:
    """
    The low-cardinality name of what went wrong, as OpenTelemetry's ``error.type`` has it.

    The status code for an error status from the API; else the exception's
    class, with its public module (``vobiz_async.APITimeoutError``).
    """
    if isinstance(error, APIStatusError) and not isinstance(error, UnexpectedResponseError):
        return str(error.status_code)
    cls = type(error)
    return f"{cls.__module__}.{cls.__qualname__}"


class HookState(enum.Enum):
    """
    Whether ``on_attempt`` has failed yet: its failure is logged once per client.
    """

    QUIET = "quiet"
    FAILED = "failed"


class Observers:
    """
    Everything watching one client's stops: its ``on_attempt`` and its telemetry.
    """

    def __init__(
        self, *, hook: AttemptHook | None, telemetry: Telemetry | None, redact: Redactor
    ) -> None:
        self.hook = hook
        self.telemetry = telemetry
        #: True when anything watches: stops then get a real Watch.
        self.active = hook is not None or telemetry is not None
        self._redact = redact
        self._hook_state = HookState.QUIET

    def watch(self, target: Target) -> Watch:
        """
        A Watch for one stop of ``target``; use it as a context manager around the stop.
        """
        if not self.active:
            return NO_WATCH
        trace = self.telemetry.stop(target) if self.telemetry is not None else None
        return LiveWatch(self, target, trace)

    def batch(self, name: str, *, concurrency: int, rate_limit: float | None) -> BatchWatch:
        """
        A watch over one batch (``stop_many``, ``iter_stop_many``); a context manager.
        """
        if self.telemetry is None:
            return NO_BATCH_WATCH
        return self.telemetry.batch(name, concurrency=concurrency, rate_limit=rate_limit)

    def call_hook(self, attempt: Attempt) -> None:
        """
        Hand ``attempt`` to ``on_attempt``; whatever it raises is logged once and ignored.
        """
        assert self.hook is not None
        try:
            returned = self.hook(attempt)
        except Exception as exc:  # the user's callback must never break a stop
            self._hook_failed(
                f"raised {type(exc).__name__}: {shorten(self._redact(str(exc)), 200)}"
            )
            return
        if inspect.iscoroutine(returned):
            # Never awaited: closed here, so that it does not warn at garbage collection.
            returned.close()
            self._hook_failed("returned a coroutine, which was not awaited (use a plain function)")

    def _hook_failed(self, what: str) -> None:
        if self._hook_state is HookState.QUIET:
            self._hook_state = HookState.FAILED
            logger.warning("on_attempt %s; ignored, and not logged again for this client", what)


class Watch:
    """
    One stop, watched; this base watches nothing (``NO_WATCH``).
    """

    __slots__ = ()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def sending(self, number: int) -> None:
        """
        Request ``number`` of this stop is being handed to the transport now.
        """

    def current(self) -> contextlib.AbstractContextManager[object]:
        """
        Around the transport call: what it should see as the current span.
        """
        return _NOTHING

    def answered(
        self, status_code: int | None, error: BaseException | None, seconds: float
    ) -> None:
        """
        The request got this answer (``error`` None: a stop or a Vobiz 404) in ``seconds``.
        """

    def decided(self, *, will_retry: bool, wait: float) -> None:
        """
        Whether another request follows the last one answered, and after how long.
        """

    def finished(self, result: StopResult) -> None:
        """
        The stop's result.
        """


_NOTHING = contextlib.nullcontext()

#: The watch of a stop nobody watches.
NO_WATCH = Watch()


class LiveWatch(Watch):
    """
    A stop watched by ``on_attempt``, OpenTelemetry or both.
    """

    __slots__ = ("_number", "_observers", "_pending", "_sent_at", "_target", "_trace")

    def __init__(self, observers: Observers, target: Target, trace: StopTrace | None) -> None:
        self._observers = observers
        self._target = target
        self._trace = trace
        self._number = 0
        #: When the request in flight was sent; None when none is.
        self._sent_at: float | None = None
        #: The last answered request, until its decision: (status, error type, duration).
        self._pending: tuple[int | None, str | None, float] | None = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and self._sent_at is not None:
            # Cancelled mid-request: it was sent, so it is reported, and its span ends.
            self.answered(None, exc, time.perf_counter() - self._sent_at)
            self.decided(will_retry=False, wait=0.0)
        if self._trace is not None:
            self._trace.close(exc)

    def sending(self, number: int) -> None:
        self._number = number
        self._sent_at = time.perf_counter()
        if self._trace is not None:
            self._trace.sending(number)

    def current(self) -> contextlib.AbstractContextManager[object]:
        if self._trace is not None:
            return self._trace.current()
        return _NOTHING

    def answered(
        self, status_code: int | None, error: BaseException | None, seconds: float
    ) -> None:
        self._sent_at = None
        kind = error_type(error) if error is not None else None
        self._pending = (status_code, kind, seconds)
        if self._trace is not None:
            self._trace.answered(status_code, error, kind, seconds)

    def decided(self, *, will_retry: bool, wait: float) -> None:
        if self._pending is None:
            return  # nothing was sent since the last decision
        status_code, kind, duration = self._pending
        self._pending = None
        if will_retry and kind is not None and self._trace is not None:
            self._trace.retried(kind)
        if self._observers.hook is not None:
            attempt = Attempt(
                target=self._target,
                number=self._number,
                status_code=status_code,
                error_type=kind,
                duration=duration,
                will_retry=will_retry,
                wait=wait if will_retry else 0.0,
            )
            self._observers.call_hook(attempt)

    def finished(self, result: StopResult) -> None:
        if self._trace is not None:
            self._trace.finished(result)


class BatchWatch:
    """
    One batch, watched; this base watches nothing (``NO_BATCH_WATCH``).
    """

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def result(self, result: StopResult) -> None:
        """
        One of the batch's results.
        """


#: The watch of a batch nobody watches.
NO_BATCH_WATCH = BatchWatch()
