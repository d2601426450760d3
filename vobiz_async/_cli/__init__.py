"""
Entry point of the vobiz-async console script.

The command needs click and rich, which the library itself does not: workers
that embed the client should not carry them. Say so instead of a traceback.
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> None:
    """
    Run the command line, or explain how to install it.
    """
    try:
        from .commands import cli
    except ImportError as exc:  # pragma: no cover - the dev extra always has them
        sys.stderr.write(
            f"vobiz-async: the command line needs the 'cli' extra ({exc.name} is missing):\n"
            "    pip install 'vobiz-async[cli]'\n"
        )
        sys.exit(2)
    cli(prog_name="vobiz-async")
