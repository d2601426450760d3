"""
Where a command's rows come from (a file, standard input, or arguments), read off the event loop.

Reading never blocks the requests: a pipe fed slowly (``kubectl logs -f |
grep ... | vobiz-async stop-all-streams -``) is read in a thread of its own,
which hands rows to the event loop through a bounded queue. Reading on the
loop froze every request in flight until the next line came, then timed them
all out.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import enum
import os
import re
import stat
import sys
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from pathlib import Path
from typing import Generic, TypeVar

import attrs

from .._targets import Target
from .exits import CommandError
from .input import (
    BadRow,
    InputError,
    Row,
    Unit,
    argument_rows,
    count_rows,
    decoded_lines,
    read_rows,
)

__all__ = [
    "ARGUMENTS_HELP",
    "InputSource",
    "ReaderState",
    "SourceKind",
    "ThreadedReader",
    "in_thread",
    "input_source",
]

T = TypeVar("T")

#: Bytes read at once; a pipe's read returns what has arrived, up to this.
CHUNK = 64 * 1024
#: Rows handed to the event loop at once, at most, and batches waiting for it, at most.
BATCH = 128
ROOM = 8

#: An argument that ends so (an extension: calls.csv, calls.cvs) is a file name, never an
#: identifier, even when no such file exists: a mistyped name must not be "stopped" as a call.
FILE_NAME = re.compile(r"\.[A-Za-z][A-Za-z0-9]{0,5}$")

ARGUMENTS_HELP = (
    "An argument is read as a file when it is - (standard input) or names an "
    "existing file; one that looks like a file name (with a / or an extension "
    "such as .csv) but names none is refused; any other is an identifier. One "
    "file, or -, or identifiers: not a mix."
)


class SourceKind(enum.Enum):
    """
    What the command's arguments name.
    """

    FILE = "file"
    STDIN = "standard input"
    ARGUMENTS = "arguments"


class ReaderState(enum.Enum):
    """
    What the reading thread is doing, for the progress display.
    """

    READING = "reading"
    #: Blocked on standard input that has not sent the next line yet.
    WAITING = "waiting for input"
    DONE = "done"


@attrs.frozen
class InputSource:
    """
    The input a command was given, as given: a file, standard input, or identifiers.
    """

    kind: SourceKind
    arguments: tuple[str, ...]

    @property
    def path(self) -> Path | None:
        """
        The file, for a file input.
        """
        return Path(self.arguments[0]) if self.kind is SourceKind.FILE else None

    @property
    def unit(self) -> Unit:
        """
        What a row number counts in messages.
        """
        return Unit.ARGUMENT if self.kind is SourceKind.ARGUMENTS else Unit.LINE

    @property
    def rereadable(self) -> bool:
        """
        Whether the same arguments give the same rows again (not so for standard input).
        """
        return self.kind is not SourceKind.STDIN

    @property
    def name(self) -> str:
        """
        How messages name the input.
        """
        if self.kind is SourceKind.FILE:
            return self.arguments[0]
        return str(self.kind.value)

    def size(self) -> int:
        """
        Bytes in a file input; 0 for anything else.
        """
        try:
            return os.stat(self.arguments[0]).st_size if self.kind is SourceKind.FILE else 0
        except OSError:
            return 0

    def is_terminal(self) -> bool:
        """
        Standard input, typed at a terminal: the person must be told it is being waited for.
        """
        if self.kind is not SourceKind.STDIN:
            return False
        try:
            return os.isatty(sys.stdin.fileno())
        except (AttributeError, ValueError, OSError):  # no standard input at all
            return False

    def reader(self, target_type: type[Target]) -> ThreadedReader[Row | BadRow]:
        """
        The rows of this input, read in a thread.
        """
        if self.kind is SourceKind.ARGUMENTS:
            values = self.arguments
            return ThreadedReader(lambda _: argument_rows(target_type, values))
        name = self.name

        def rows(before_read: Callable[[], None]) -> Iterator[Row | BadRow]:
            with self._opened() as fd:
                chunks = read_chunks(fd, before_read)
                yield from read_rows(target_type, decoded_lines(split_lines(chunks), name))

        return ThreadedReader(rows, waits=self.kind is SourceKind.STDIN)

    def count(self, target_type: type[Target], stop: threading.Event) -> int | None:
        """
        Rows in a regular file (checking its encoding and header on the way); None otherwise.
        """
        if self.kind is SourceKind.ARGUMENTS:
            return len(self.arguments)
        if self.kind is SourceKind.STDIN:
            return None
        with self._opened() as fd:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None  # a FIFO or /dev/stdin: read once, as it comes

            def stop_requested() -> None:
                if stop.is_set():
                    raise _Stopped

            lines = split_lines(read_chunks(fd, stop_requested))
            try:
                return count_rows(target_type, decoded_lines(lines, self.name))
            except _Stopped:
                return None

    @contextlib.contextmanager
    def _opened(self) -> Iterator[int]:
        if self.kind is SourceKind.STDIN:
            # The descriptor, not sys.stdin: a thread blocked on sys.stdin's buffer
            # holds its lock, and the interpreter's exit would wait for it.
            yield sys.stdin.fileno()
            return
        try:
            fd = os.open(self.arguments[0], os.O_RDONLY)
        except OSError as exc:
            raise InputError(f"cannot read {self.arguments[0]}: {exc.strerror}") from None
        try:
            yield fd
        finally:
            os.close(fd)


class _Stopped(Exception):
    """
    The run no longer needs what this thread was reading.
    """


def input_source(arguments: tuple[str, ...]) -> InputSource:
    """
    What the command's arguments name: one file, ``-``, or identifiers (see ARGUMENTS_HELP).
    """
    if not arguments:
        raise CommandError(
            "nothing to stop: give a FILE, - for standard input, or identifiers as arguments"
        )
    files = [arg for arg in arguments if arg == "-" or os.path.exists(arg)]
    if not files:
        for argument in arguments:
            first = next(csv.reader([argument]), [""])[0].strip() if argument else ""
            if "/" in first or FILE_NAME.search(first):
                # Never an identifier (those hold no "/"), nor likely one: a mistyped file name.
                raise CommandError(
                    f"no such file: {argument} (an argument that names no existing file "
                    "is taken for an identifier, and this one does not look like one)"
                )
        return InputSource(SourceKind.ARGUMENTS, arguments)
    if len(arguments) > 1:
        raise CommandError(
            f"give one file, or - for standard input, or identifiers, not a mix: "
            f"{files[0]} is {'standard input' if files[0] == '-' else 'a file'}; "
            "to read several files, concatenate them: cat a.csv b.csv | vobiz-async ... -"
        )
    argument = arguments[0]
    if argument == "-":
        return InputSource(SourceKind.STDIN, arguments)
    if os.path.isdir(argument):
        raise CommandError(f"{argument} is a directory, not a file of targets")
    return InputSource(SourceKind.FILE, arguments)


def read_chunks(fd: int, before_read: Callable[[], None]) -> Iterator[bytes]:
    """
    The bytes of ``fd`` as they come; ``before_read`` runs before each read, which may block.
    """
    while True:
        before_read()
        chunk = os.read(fd, CHUNK)
        if not chunk:
            return
        yield chunk


def split_lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """
    The lines in ``chunks``, each with its newline; the last one without, if it has none.
    """
    partial = b""
    for chunk in chunks:
        lines = (partial + chunk).split(b"\n")
        partial = lines.pop()
        for line in lines:
            yield line + b"\n"
    if partial:
        yield partial


_END = object()


class ThreadedReader(Generic[T]):
    """
    Items made by a blocking iterator in a thread, handed to the event loop in small batches.

    ``produce(hand_over)`` makes the iterator; it calls ``hand_over()`` before
    each read that may block, so that what was read so far reaches the loop
    at once instead of waiting for a full batch. At most ROOM batches wait for
    the loop: a slow batch holds the reading back, and memory stays flat.
    An exception in the thread (an InputError: bytes that are not UTF-8) is
    raised in the loop after the items before it.
    """

    def __init__(
        self, produce: Callable[[Callable[[], None]], Iterator[T]], *, waits: bool = False
    ) -> None:
        self._produce = produce
        self._waits = waits
        self._room = threading.Semaphore(ROOM)
        self._closed = threading.Event()
        self.state = ReaderState.READING

    async def items(self) -> AsyncGenerator[T]:
        """
        The items, read in a daemon thread; leaving early stops the thread at its next step.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        thread = threading.Thread(
            target=self._work, args=(loop, queue), name="vobiz-async input", daemon=True
        )
        thread.start()
        try:
            while True:
                got = await queue.get()
                if got is _END:
                    return
                if isinstance(got, BaseException):
                    raise got
                self._room.release()
                assert isinstance(got, list)
                for item in got:
                    yield item
        finally:
            self.state = ReaderState.DONE
            self._closed.set()
            self._room.release()  # a thread waiting for room wakes up and sees it is closed

    def _work(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[object]) -> None:
        batch: list[T] = []

        def give(item: object) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def hand_over() -> None:
            if batch:
                self._room.acquire()
                if self._closed.is_set():
                    raise _Stopped
                give(list(batch))
                batch.clear()
            if self._waits:
                self.state = ReaderState.WAITING

        end: object = _END
        try:
            for item in self._produce(hand_over):
                if self._waits:
                    self.state = ReaderState.READING
                batch.append(item)
                if len(batch) >= BATCH:
                    hand_over()
            hand_over()
        except _Stopped:
            return
        except BaseException as exc:  # raised in the loop, after the items before it
            with contextlib.suppress(_Stopped):
                hand_over()
            end = exc
        give(end)


async def in_thread(work: Callable[[threading.Event], T]) -> T:
    """
    ``work(stop)`` in a daemon thread; cancelled, it sets ``stop`` and does not wait for it.

    Not asyncio.to_thread: its executor's threads are waited for when the loop
    closes, so Ctrl-C while counting a huge file would wait for the count.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()
    stop = threading.Event()

    def settle(outcome: Callable[[], None]) -> None:
        def apply() -> None:
            if not done.done():
                outcome()

        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            loop.call_soon_threadsafe(apply)

    def run() -> None:
        try:
            result = work(stop)
        except BaseException as exc:
            error = exc  # the name ``exc`` is gone once the except block ends
            settle(lambda: done.set_exception(error))
        else:
            settle(lambda: done.set_result(result))

    threading.Thread(target=run, name="vobiz-async count", daemon=True).start()
    try:
        return await done
    finally:
        stop.set()
