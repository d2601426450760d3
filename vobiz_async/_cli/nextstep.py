"""
What to run next, as the summary prints it: a command that can be pasted as it is.

- Rows never read (Ctrl-C, a brake, input that broke off): the same command
  with ``--resume REPORT``, which skips what the report shows done and sends
  everything else, failures included. From standard input, the same input
  must be fed again: said, since the command cannot know it.
- Everything read, some not finished (failed, not sent, interrupted in
  flight): ``vobiz-async retry-failed REPORT``, which sends just those again.

Either repeats the options that say how to send (``--rate``, ``--base-url``...).
"""

from __future__ import annotations

import shlex
from typing import Any

import attrs

from .exits import ExitStatus
from .options import SENDING, Options
from .report import ReportPlan
from .source import InputSource
from .tally import Tally

__all__ = ["NextStep", "next_step", "sending_arguments"]


@attrs.frozen
class NextStep:
    """
    The command that finishes the job, and why it is the one.
    """

    why: str
    #: The command's arguments after ``vobiz-async``; None when it cannot be given whole.
    argv: tuple[str, ...] | None
    #: What to print instead when ``argv`` is None.
    shown: str = ""

    @property
    def command(self) -> str | None:
        """
        The command as typed, quoted for the shell; None when it cannot be given whole.
        """
        return None if self.argv is None else "vobiz-async " + shlex.join(self.argv)

    @property
    def line(self) -> str:
        """
        The line the summary prints.
        """
        return self.command or self.shown


def sending_arguments(options: Options) -> list[str]:
    """
    The options of this run that say how to send, where they differ from the defaults.
    """
    arguments = []
    for name in SENDING:
        field = attrs.fields_dict(Options)[name]
        value: Any = getattr(options, name)
        if value is None or value == field.default:
            continue
        if name == "proxy" and "@" in str(value):
            continue  # never a password on screen: the command falls back to $HTTPS_PROXY
        text = f"{value:g}" if isinstance(value, float) else str(value)
        arguments += [f"--{name.replace('_', '-')}", text]
    return arguments


def next_step(
    tally: Tally,
    *,
    command: str,
    source: InputSource | None,
    options: Options,
    report: ReportPlan | None,
) -> NextStep | None:
    """
    The command that finishes this run's job, or None when nothing is left.

    Without a report (none kept, or nothing written to it) only rows never
    read can be finished: by the same command again.
    """
    sending = sending_arguments(options)
    resume = ["--resume", report.name] if report is not None else []
    skipping = " (what the report shows done is skipped)" if report is not None else ""
    to_fix = tally.input_error is not None or (
        tally.halt is not None and tally.halt.status is ExitStatus.USAGE
    )
    fix_first = "once that is fixed, " if to_fix else ""
    unread = tally.unread
    if unread is None or unread > 0:
        if source is not None and source.rereadable:
            argv = (command, *source.arguments, *sending, *resume)
            return NextStep(f"{fix_first}to finish the job{skipping}", argv)
        if source is not None:
            again = shlex.join([command, "-", *sending, *resume])
            return NextStep(
                f"{fix_first}to finish the job, feed the same input again (the rest of "
                f"standard input was not read){skipping}",
                None,
                f"<the same input> | vobiz-async {again}",
            )
    if report is None:
        return None
    if tally.to_retry or unread != 0:
        count = tally.to_retry
        what = (
            f"the {count} target{'s' if count != 1 else ''}"
            if unread == 0
            else "what the report shows"
        )
        return NextStep(
            f"{fix_first}to retry {what} that did not finish",
            ("retry-failed", report.name, *sending),
        )
    if tally.bad_rows and source is not None and source.rereadable:
        count = tally.bad_rows
        return NextStep(
            f"to send the {count} bad row{'s' if count != 1 else ''} once fixed in "
            f"{source.name}{skipping}",
            (command, *source.arguments, *sending, *resume),
        )
    return None
