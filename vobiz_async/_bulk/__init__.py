"""
stop_many(), iter_stop_many() and teardown(): bounded, paced fan-out that loses nothing.

One engine (``engine.fan_out``) and two thin layers over it: ``collect``
keeps every result for a BulkReport, ``stream`` hands each one over as it
completes. ``teardown`` turns calls into listings and stops for the engine.
``brakes`` holds the batch-wide pacing and brakes.
"""

from .announce import SentHook
from .collect import stop_many
from .engine import ResultHook
from .stream import StopResultStream, iter_stop_many
from .teardown import Calls, ListingHook, Skip, StreamsTo, iter_teardown, teardown

__all__ = [
    "Calls",
    "ListingHook",
    "ResultHook",
    "SentHook",
    "Skip",
    "StopResultStream",
    "StreamsTo",
    "iter_stop_many",
    "iter_teardown",
    "stop_many",
    "teardown",
]
