"""
stop_many() and iter_stop_many(): bounded, paced fan-out that loses nothing.

One engine (``engine.fan_out``) and two thin layers over it: ``collect``
keeps every result for a BulkReport, ``stream`` hands each one over as it
completes. ``brakes`` holds the batch-wide pacing and brakes.
"""

from .collect import stop_many
from .engine import ResultHook
from .stream import StopResultStream, iter_stop_many

__all__ = ["ResultHook", "StopResultStream", "iter_stop_many", "stop_many"]
