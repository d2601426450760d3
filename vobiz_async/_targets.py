"""
What can be stopped, and how each goes on the wire.

Targets are plain frozen values that hold whatever they are given: a batch
read from a file must be able to carry a bad row as far as its result, so
validation (``check_target``) happens in the client, just before a request
would be built. Each target's ``@route`` is its whole wire form.
"""

from __future__ import annotations

from typing import ClassVar, Literal, get_args

import attrs

from ._exceptions import InvalidTargetError
from ._routes import Route, body_field, path_field, route

__all__ = ["STOP_TARGETS", "AllStreams", "Recording", "Stream", "Target", "check_target"]


@route("DELETE", "Call/{call_uuid}/Stream/{stream_id}/")
@attrs.frozen
class Stream:
    """
    One audio stream on a call.
    """

    call_uuid: str = path_field()
    stream_id: str = path_field()

    kind: ClassVar[Literal["stream"]] = "stream"
    route: ClassVar[Route]

    def describe(self) -> str:
        """
        How this target reads in a message.
        """
        return f"stream {self.stream_id!r} on call {self.call_uuid!r}"


@route("DELETE", "Call/{call_uuid}/Stream/")
@attrs.frozen
class AllStreams:
    """
    Every stream on a call.
    """

    call_uuid: str = path_field()

    kind: ClassVar[Literal["all_streams"]] = "all_streams"
    route: ClassVar[Route]

    def describe(self) -> str:
        """
        How this target reads in a message.
        """
        return f"streams on call {self.call_uuid!r}"


@route("DELETE", "Call/{call_uuid}/Record/")
@attrs.frozen
class Recording:
    """
    One recording on a call when ``url`` is given, else every recording on it.
    """

    call_uuid: str = path_field()
    #: Sent as ``{"URL": url}`` in a JSON body; without it every recording stops.
    url: str | None = body_field("URL")

    kind: ClassVar[Literal["recording"]] = "recording"
    route: ClassVar[Route]

    def describe(self) -> str:
        """
        How this target reads in a message.
        """
        if self.url is None:
            return f"recordings on call {self.call_uuid!r}"
        return f"recording {self.url!r} on call {self.call_uuid!r}"


Target = Stream | AllStreams | Recording

#: The target types, for isinstance checks: the members of Target, so a new one is listed once.
STOP_TARGETS: tuple[type[Target], ...] = get_args(Target)


def check_target(target: object) -> Target:
    """
    Validate every field of a target before anything is sent for it.
    """
    if not isinstance(target, STOP_TARGETS):
        names = [cls.__name__ for cls in STOP_TARGETS]
        raise InvalidTargetError(
            f"expected a {', '.join(names[:-1])} or {names[-1]}, not {type(target).__name__}"
        )
    return target.route.check(target)
