"""
OpenTelemetry for stops and batches: spans and metrics through the API alone.

Installed with the ``otel`` extra (``opentelemetry-api``); without it this
module offers nothing and the client watches nothing. With the API and no SDK
configured, the API's own no-op tracer and meter take everything.

What is emitted, following the HTTP semantic conventions for the requests:

- a span per stop (``vobiz.stop_stream``, ``vobiz.stop_all_streams``,
  ``vobiz.stop_recording``) and per batch (``vobiz.stop_many``,
  ``vobiz.iter_stop_many``), INTERNAL, a batch's stops its children;
- under each stop a CLIENT span per request sent, named ``{method}
  {url.template}``, with ``http.request.method``, ``server.address``,
  ``server.port``, ``url.full``, ``url.template``, ``http.response.status_code``,
  ``http.request.resend_count`` from the second request on, and ``error.type``
  when it failed. A Vobiz 404 is a stop that found nothing to stop: no
  ``error.type``, status left unset;
- ``http.client.request.duration`` (histogram, seconds), ``vobiz.stops``
  (counter: ``vobiz.target.kind``, ``vobiz.outcome``, ``error.type``) and
  ``vobiz.retries`` (counter: ``vobiz.target.kind``, ``vobiz.retry.reason``).

No header is ever an attribute, so the token cannot be one; ``url.full`` holds
the account id and the target's ids, which are not secrets.
"""

from __future__ import annotations

import contextlib
import math
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import attrs
import httpx

from ._config import Settings
from ._exceptions import ConfigurationError
from ._models import Outcome, StopResult
from ._observe import BatchWatch, error_type
from ._targets import STOP_TARGETS, Stream, Target
from ._version import __version__

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, trace
    from opentelemetry.trace import SpanKind, StatusCode
except ImportError:  # the otel extra is not installed
    AVAILABLE = False
else:
    AVAILABLE = True

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["AVAILABLE", "BatchTrace", "StopTrace", "Telemetry", "telemetry_for"]

SCOPE = "vobiz_async"

# Attribute names: the HTTP semantic conventions' (stable, but url.template),
# then this library's own.
HTTP_REQUEST_METHOD = "http.request.method"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
HTTP_REQUEST_RESEND_COUNT = "http.request.resend_count"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
URL_FULL = "url.full"
URL_TEMPLATE = "url.template"
ERROR_TYPE = "error.type"
TARGET_KIND = "vobiz.target.kind"
CALL_UUID = "vobiz.call_uuid"
STREAM_ID = "vobiz.stream_id"
OUTCOME = "vobiz.outcome"
ATTEMPTS = "vobiz.attempts"
RETRY_REASON = "vobiz.retry.reason"
BATCH_CONCURRENCY = "vobiz.batch.concurrency"
BATCH_RATE_LIMIT = "vobiz.batch.rate_limit"
BATCH_TARGETS = "vobiz.batch.targets"

#: The buckets the semantic conventions advise for ``http.client.request.duration``.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)

DEFAULT_PORTS = {"http": 80, "https": 443}

#: What ``current()`` gives when no request span records.
NOTHING = contextlib.nullcontext()

#: Identifiers longer than this are not valid ones: a bad row's value stays out of spans.
MAX_ID_ATTRIBUTE = 256


def telemetry_for(
    settings: Settings, *, tracer_provider: object, meter_provider: object
) -> Telemetry | None:
    """
    The client's telemetry, or None without the OpenTelemetry API; ConfigurationError if misused.

    The providers default to the global ones, as the API resolves them.
    """
    if not AVAILABLE:
        if tracer_provider is not None or meter_provider is not None:
            raise ConfigurationError(
                "tracer_provider= and meter_provider= need the OpenTelemetry API: "
                "pip install 'vobiz-async[otel]'"
            )
        return None
    if tracer_provider is not None and not isinstance(tracer_provider, trace.TracerProvider):
        raise ConfigurationError(
            "tracer_provider must be an opentelemetry.trace.TracerProvider, "
            f"not {type(tracer_provider).__name__}"
        )
    if meter_provider is not None and not isinstance(meter_provider, metrics.MeterProvider):
        raise ConfigurationError(
            "meter_provider must be an opentelemetry.metrics.MeterProvider, "
            f"not {type(meter_provider).__name__}"
        )
    return Telemetry(settings, tracer_provider=tracer_provider, meter_provider=meter_provider)


class Telemetry:
    """
    One client's tracer and instruments, and what every request of it has in common.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
    ) -> None:
        self.tracer = trace.get_tracer(SCOPE, __version__, tracer_provider)
        meter = metrics.get_meter(SCOPE, __version__, meter_provider)
        self.duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.stops = meter.create_counter(
            "vobiz.stops", unit="{stop}", description="Stops, by target kind and outcome."
        )
        self.retries = meter.create_counter(
            "vobiz.retries",
            unit="{retry}",
            description="Requests sent again after a failed one, by reason.",
        )
        url = httpx.URL(settings.base_url)
        server: dict[str, Any] = {
            SERVER_ADDRESS: url.host,
            SERVER_PORT: url.port or DEFAULT_PORTS[url.scheme],
        }
        #: Everything before the route's path in a URL, and in its template.
        self.account_url = settings.account_url
        account_path = url.path.rstrip("/") + "/Account/{auth_id}/"
        #: What every stop of a target class shares, worked out once.
        self.kinds: dict[type[Any], KindSpans] = {
            cls: KindSpans.of(cls.kind, cls.route.method, account_path + cls.route.path, server)
            for cls in STOP_TARGETS
        }

    def stop(self, target: Target) -> StopTrace:
        """
        The spans of one stop, its own started now.
        """
        return StopTrace(self, target)

    def batch(self, name: str, *, concurrency: int, rate_limit: float | None) -> BatchTrace:
        """
        The span of one batch, started and made current when entered.
        """
        return BatchTrace(self, name, concurrency=concurrency, rate_limit=rate_limit)


@attrs.frozen
class KindSpans:
    """
    The names and attributes every stop of one kind of target shares.

    Shared dicts, never changed: the API copies what it keeps.
    """

    kind: str
    stop_name: str
    stop_attributes: dict[str, Any]
    request_name: str
    #: Also the duration's attributes, before the answer's.
    request_attributes: dict[str, Any]
    #: The ``vobiz.stops`` attributes of each outcome that is not a failure.
    outcomes: dict[Outcome, dict[str, Any]]

    @classmethod
    def of(cls, kind: str, method: str, template: str, server: dict[str, Any]) -> KindSpans:
        """
        The spans of a kind whose requests are ``method`` on the path ``template``.
        """
        return cls(
            kind=kind,
            stop_name=f"vobiz.stop_{kind}",
            stop_attributes={TARGET_KIND: kind},
            request_name=f"{method} {template}",
            request_attributes={HTTP_REQUEST_METHOD: method, URL_TEMPLATE: template, **server},
            outcomes={outcome: {TARGET_KIND: kind, OUTCOME: outcome.value} for outcome in Outcome},
        )


def _identifier(value: object) -> str | None:
    return value if isinstance(value, str) and len(value) <= MAX_ID_ATTRIBUTE else None


class StopTrace:
    """
    One stop's span, and the CLIENT span of the request it has in flight.

    A stop whose span does not record (no SDK, or not sampled) starts no
    request spans and touches no context: only the metrics are kept, so the
    API's no-op tracer costs next to nothing.
    """

    __slots__ = ("_kind", "_parent", "_request", "_span", "_target", "_telemetry")

    def __init__(self, telemetry: Telemetry, target: Target) -> None:
        self._telemetry = telemetry
        self._target = target
        #: None when the target is not one at all (a batch's bad row).
        self._kind = kind = telemetry.kinds.get(type(target))
        self._request: Span | None = None
        if kind is None:
            self._span = telemetry.tracer.start_span("vobiz.stop")
        else:
            self._span = telemetry.tracer.start_span(
                kind.stop_name, attributes=kind.stop_attributes
            )
        #: The context of this stop's requests; None when nothing is recorded.
        self._parent: Context | None = None
        if self._span.is_recording():
            self._parent = trace.set_span_in_context(self._span)
            if (call_uuid := _identifier(getattr(target, "call_uuid", None))) is not None:
                self._span.set_attribute(CALL_UUID, call_uuid)
            if isinstance(target, Stream) and (stream_id := _identifier(target.stream_id)):
                self._span.set_attribute(STREAM_ID, stream_id)

    def sending(self, number: int) -> None:
        """
        Start the CLIENT span of request ``number``.
        """
        if self._parent is None or self._kind is None:
            return
        attributes = dict(self._kind.request_attributes)
        route = self._target.route
        attributes[URL_FULL] = self._telemetry.account_url + route.path_for(self._target)
        if number > 1:
            attributes[HTTP_REQUEST_RESEND_COUNT] = number - 1
        self._request = self._telemetry.tracer.start_span(
            self._kind.request_name,
            context=self._parent,
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )

    def current(self) -> contextlib.AbstractContextManager[object]:
        """
        The request's span as the current one, so that a transport's own spans nest in it.
        """
        if self._request is None:
            return NOTHING
        return trace.use_span(self._request, record_exception=False, set_status_on_exception=False)

    def answered(
        self, status_code: int | None, error: BaseException | None, kind: str | None, seconds: float
    ) -> None:
        """
        End the request's span with its answer, and record its duration.
        """
        assert self._kind is not None  # only a target's requests are sent
        metric = dict(self._kind.request_attributes)
        if status_code is not None:
            metric[HTTP_RESPONSE_STATUS_CODE] = status_code
        if kind is not None:
            metric[ERROR_TYPE] = kind
        self._telemetry.duration.record(seconds, metric)
        span, self._request = self._request, None
        if span is None:
            return
        if status_code is not None:
            span.set_attribute(HTTP_RESPONSE_STATUS_CODE, status_code)
        if kind is not None:
            span.set_attribute(ERROR_TYPE, kind)
            # The status code says it all, when there is one that is the error.
            described = status_code is None or kind != str(status_code)
            span.set_status(StatusCode.ERROR, str(error) if described and error else None)
        span.end()

    def retried(self, reason: str) -> None:
        """
        Count a request sent again, by the reason (the last one's ``error.type``).
        """
        assert self._kind is not None
        self._telemetry.retries.add(1, {TARGET_KIND: self._kind.kind, RETRY_REASON: reason})

    def finished(self, result: StopResult) -> None:
        """
        Give the stop's span its outcome, and count it.
        """
        kind = self._kind
        failure = error_type(result.error) if result.error is not None else None
        if failure is None and kind is not None:
            attributes = kind.outcomes[result.outcome]
        else:
            attributes = {OUTCOME: result.outcome.value}
            if kind is not None:
                attributes[TARGET_KIND] = kind.kind
            if failure is not None:
                attributes[ERROR_TYPE] = failure
        self._telemetry.stops.add(1, attributes)
        if self._parent is None:
            return
        span = self._span
        span.set_attribute(OUTCOME, result.outcome.value)
        span.set_attribute(ATTEMPTS, result.attempts)
        if failure is not None:
            span.set_attribute(ERROR_TYPE, failure)
            span.set_status(StatusCode.ERROR, str(result.error))

    def close(self, exc: BaseException | None) -> None:
        """
        End the stop's span; one left by an exception (a cancellation) says so.
        """
        if exc is not None:
            self._span.set_attribute(ERROR_TYPE, error_type(exc))
            self._span.set_status(StatusCode.ERROR)
        self._span.end()


class BatchTrace(BatchWatch):
    """
    One batch's span: current while the batch runs, so that its stops are its children.
    """

    def __init__(
        self, telemetry: Telemetry, name: str, *, concurrency: int, rate_limit: float | None
    ) -> None:
        attributes: dict[str, Any] = {BATCH_CONCURRENCY: concurrency}
        if rate_limit is not None and math.isfinite(rate_limit):
            attributes[BATCH_RATE_LIMIT] = float(rate_limit)
        self._span = telemetry.tracer.start_span(name, attributes=attributes)
        self._counts = dict.fromkeys(Outcome, 0)
        self._token: Token[Context] | None = None

    def __enter__(self) -> Self:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            otel_context.detach(self._token)
        span = self._span
        span.set_attribute(BATCH_TARGETS, sum(self._counts.values()))
        for outcome in Outcome:
            span.set_attribute(f"vobiz.batch.{outcome.value}", self._counts[outcome])
        if exc is not None:
            # The input's or on_result's exception, or a cancellation (a stream left early).
            # The batch's task group wraps the one that stopped it: name that one.
            cause = exc
            while isinstance(cause, BaseExceptionGroup) and len(cause.exceptions) == 1:
                cause = cause.exceptions[0]
            span.set_attribute(ERROR_TYPE, error_type(cause))
            if isinstance(exc, Exception):
                span.set_status(StatusCode.ERROR)
        span.end()

    def result(self, result: StopResult) -> None:
        """
        Count one of the batch's results.
        """
        self._counts[result.outcome] += 1
