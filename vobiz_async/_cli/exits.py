"""
The exit statuses of every vobiz-async command, and the errors that end a command with one.

Scripts and runbooks branch on these numbers, so each has one meaning in
every command, and ``--help`` prints the same table (EXIT_STATUS_HELP).
"""

from __future__ import annotations

import enum

import click

__all__ = ["EXIT_STATUS_HELP", "CommandError", "ExitStatus"]


class ExitStatus(enum.IntEnum):
    """
    What a run of a command amounted to, as its process exit status.
    """

    #: Every target is stopped or was not found (nothing left running).
    OK = 0
    #: Some targets failed (the API refused them or kept failing, or bad input rows).
    FAILED = 1
    #: Nothing could be done as asked: bad usage, input, configuration or credentials,
    #: found before sending or during the run (a 401, no connection to the base URL).
    USAGE = 2
    #: Ctrl-C or SIGTERM, at any point: the summary says what was done.
    INTERRUPTED = 130


#: The exit status table, as each command's --help prints it.
ENVIRONMENT_HELP = (
    "\b\nEnvironment:\n"
    "  VOBIZ_AUTH_ID, VOBIZ_AUTH_TOKEN  the credentials (required; never given\n"
    "                                   as options, to stay out of shell history)\n"
    "  VOBIZ_BASE_URL                   the API base URL (or --base-url)"
)

EXIT_STATUS_HELP = (
    "\b\nExit status:\n"
    "  0    every target stopped or not found\n"
    "  1    some targets failed (see the summary and the report)\n"
    "  2    bad usage, input or configuration, also found during the run\n"
    "       (401: wrong credentials; no connection: wrong base URL, VPN)\n"
    "  130  interrupted (Ctrl-C): the summary says how to finish"
)


class CommandError(click.ClickException):
    """
    A problem that ends the command with a one-line message and exit status 2.

    Shown as ``vobiz-async: <message>``, never with a traceback.
    """

    exit_code = ExitStatus.USAGE

    def show(self, file: object = None) -> None:
        click.echo(f"vobiz-async: {self.format_message()}", err=True)
