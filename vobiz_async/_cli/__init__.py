"""
Entry point of the vobiz-async console script.

The command needs click and rich, which the library itself does not: workers
that embed the client should not carry them. Say so instead of a traceback.

No path out of here prints a traceback: usage and configuration problems are
one line and exit 2, Ctrl-C anywhere is exit 130, and anything unforeseen is
one line naming the error (exit 1) rather than a page of frames.
"""

from __future__ import annotations

import sys

__all__ = ["main"]

INTERRUPTED = 130


def main() -> None:
    """
    Run the command line, or explain how to install it.
    """
    try:
        status = _run()
    except KeyboardInterrupt:  # before the command's own handler, or after it
        sys.stderr.write("\nvobiz-async: interrupted\n")
        status = INTERRUPTED
    sys.exit(status)


def _run() -> int:
    try:
        import click

        from .commands import cli
        from .exits import ExitStatus
    except ImportError as exc:  # pragma: no cover - the dev extra always has them
        sys.stderr.write(
            f"vobiz-async: the command line needs the 'cli' extra ({exc.name} is missing):\n"
            "    pip install 'vobiz-async[cli]'\n"
        )
        return 2
    try:
        result = cli.main(prog_name="vobiz-async", standalone_mode=False)
    except click.Abort:  # click's word for Ctrl-C (or end of input) at one of its prompts
        sys.stderr.write("\nvobiz-async: interrupted\n")
        return ExitStatus.INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except BrokenPipeError:
        # The reader of our output went away (| head): nothing left to say to it.
        sys.stderr.close()
        return ExitStatus.FAILED
    except Exception as exc:
        sys.stderr.write(
            f"vobiz-async: unexpected error (a bug; please report it): "
            f"{type(exc).__name__}: {exc}\n"
        )
        return ExitStatus.FAILED
    return result if isinstance(result, int) else ExitStatus.OK
