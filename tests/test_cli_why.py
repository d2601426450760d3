"""
The command line says why things fail, on screen, and exits with the status it documents.

Each test runs the installed console script against a fake Vobiz on loopback.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vobiz_async.testing import FakeVobiz, Faults

from .clirun import NEVER_SHOWN, SCRIPT, cli_env, report_lines, vobiz_async, written

CALLS = [f"call-{i:04d}" for i in range(500)]


@pytest.fixture
async def served() -> AsyncIterator[tuple[FakeVobiz, str]]:
    fake = FakeVobiz(open_world=True)
    async with fake.serve() as base_url:
        yield fake, base_url


def closed_port_url() -> str:
    """A loopback base URL where nothing listens: every connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/v1"


async def test_wrong_credentials_say_401_and_stop(
    served: tuple[FakeVobiz, str], tmp_path: Path
) -> None:
    """A 401 says which variables to check; unsent targets are not attempted; exit 2."""
    fake, base_url = served
    calls = written(tmp_path / "calls.txt", CALLS, header="call_uuid")
    env = cli_env(fake, base_url, VOBIZ_AUTH_TOKEN="wrong-token")
    run = await vobiz_async(
        "stop-all-streams", calls, "--concurrency", "10", "--json", env=env, cwd=tmp_path
    )
    assert run.status == 2, run
    assert "authentication failed (401): check VOBIZ_AUTH_ID and VOBIZ_AUTH_TOKEN" in run.stderr
    summary = run.summary
    assert 1 <= summary["failed"] <= 10  # the requests the API refused
    assert summary["not_attempted"] == len(CALLS) - summary["failed"]
    assert fake.request_count <= 10


async def test_a_wrong_base_url_stops_early_saying_why(tmp_path: Path) -> None:
    """Connections refused before any answer: the batch stops early, says why; exit 2."""
    calls = written(tmp_path / "calls.txt", [f"c{i}" for i in range(2000)], header="call_uuid")
    env = cli_env(FakeVobiz(), closed_port_url())
    run = await vobiz_async("stop-all-streams", calls, "--json", env=env, cwd=tmp_path)
    assert run.status == 2, run
    assert "check the base URL" in run.stderr
    assert "refused" in run.stderr.lower()
    summary = run.summary
    assert summary["not_attempted"] >= 1900
    assert summary["stopped"] == 0


async def test_the_summary_names_the_commonest_failure_reasons(tmp_path: Path) -> None:
    """The reasons are on screen, most common first, not only in the report."""
    fake = FakeVobiz(open_world=True, faults=Faults(error_503=1.0))
    calls = written(tmp_path / "calls.txt", CALLS[:30], header="call_uuid")
    async with fake.serve() as base_url:
        run = await vobiz_async(
            "stop-all-streams",
            calls,
            "--max-attempts",
            "1",
            env=cli_env(fake, base_url),
            cwd=tmp_path,
        )
    assert run.status == 1, run
    assert "503 Service Unavailable" in run.stdout + run.stderr
    assert "30" in run.stdout


async def test_ctrl_c_names_requests_in_flight_honestly(tmp_path: Path) -> None:
    """Requests unanswered at Ctrl-C may have been applied: said so, not "not attempted"."""
    fake = FakeVobiz(open_world=True, faults=Faults(hang=1.0))
    calls = written(tmp_path / "calls.txt", CALLS[:50], header="call_uuid")
    report = tmp_path / "r.jsonl"
    async with fake.serve() as base_url:
        proc = await asyncio.create_subprocess_exec(
            SCRIPT,
            "stop-all-streams",
            str(calls),
            "--concurrency",
            "5",
            "--report",
            str(report),
            "--json",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=cli_env(fake, base_url),
        )
        await asyncio.wait_for(fake.wait_for_requests(5), timeout=60)
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 130, err.decode()
    import json

    summary = json.loads(out)
    assert summary["interrupted_in_flight"] == 5
    assert summary["not_attempted"] == 45
    assert "may have been applied" in err.decode()
    assert [line["outcome"] for line in report_lines(report)] == ["interrupted"] * 5
    for never in NEVER_SHOWN:
        assert never not in err.decode()


async def test_ctrl_c_while_counting_a_big_file_exits_130(
    served: tuple[FakeVobiz, str], tmp_path: Path
) -> None:
    """Ctrl-C while the rows are counted: exit 130 at once, nothing sent, no "Aborted!"."""
    fake, base_url = served
    calls = tmp_path / "calls.txt"
    calls.write_bytes(b"".join(b"0f6c1a52-8d3b-4c1e-9a7f-%012d\n" % i for i in range(1_000_000)))
    proc = await asyncio.create_subprocess_exec(
        SCRIPT,
        "stop-all-streams",
        str(calls),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(fake, base_url),
        cwd=tmp_path,
    )
    assert proc.stderr is not None
    said = await asyncio.wait_for(proc.stderr.readline(), timeout=60)
    assert b"counting the rows" in said, said
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 130, err.decode()
    assert "interrupted" in err.decode()
    for never in NEVER_SHOWN:
        assert never not in (out + err).decode()
    assert fake.request_count == 0


async def test_dry_run_checks_credentials_and_base_url(
    served: tuple[FakeVobiz, str], tmp_path: Path
) -> None:
    """--dry-run refuses what the real run would: no credentials, a plain-http remote base URL."""
    fake, base_url = served
    calls = written(tmp_path / "calls.txt", CALLS[:3], header="call_uuid")
    no_credentials = await vobiz_async(
        "stop-all-streams", calls, "--dry-run", env=cli_env(None, base_url)
    )
    assert no_credentials.status == 2, no_credentials
    assert "VOBIZ_AUTH_ID" in no_credentials.stderr
    assert "3 targets" in no_credentials.stdout + no_credentials.stderr  # the input was checked

    clear_text = await vobiz_async(
        "stop-all-streams", calls, "--dry-run", env=cli_env(fake, "http://vobiz.example/api/v1")
    )
    assert clear_text.status == 2, clear_text
    assert "VOBIZ_BASE_URL" in clear_text.stderr

    fine = await vobiz_async("stop-all-streams", calls, "--dry-run", env=cli_env(fake, base_url))
    assert fine.status == 0, fine
    assert fake.request_count == 0


async def test_missing_credentials_name_variables_not_keyword_arguments(tmp_path: Path) -> None:
    """The message names VOBIZ_AUTH_ID and VOBIZ_AUTH_TOKEN, not auth_id= and auth_token=."""
    calls = written(tmp_path / "calls.txt", CALLS[:1], header="call_uuid")
    run = await vobiz_async("stop-all-streams", calls, env=cli_env(None, None))
    assert run.status == 2, run
    assert "VOBIZ_AUTH_ID" in run.stderr
    assert "VOBIZ_AUTH_TOKEN" in run.stderr
    assert "auth_id=" not in run.stderr
    assert "auth_token=" not in run.stderr


@pytest.mark.parametrize(
    "command", ["stop-streams", "stop-all-streams", "stop-recordings", "teardown"]
)
async def test_each_help_says_formats_environment_exit_codes_and_an_example(command: str) -> None:
    """--help is enough at 3 a.m.: what input, which variables, what each exit status means."""
    run = await vobiz_async(command, "--help", env=cli_env(None, None, COLUMNS="80"))
    assert run.status == 0, run
    text = " ".join(run.stdout.split())
    for said in (
        "header",
        "CSV",
        "JSON Lines",
        "standard input",
        "VOBIZ_AUTH_ID",
        "VOBIZ_AUTH_TOKEN",
        "VOBIZ_BASE_URL",
        "0 ",
        "1 ",
        "2 ",
        "130",
        f"vobiz-async {command} ",
    ):
        assert said in text, said
    assert max(len(line) for line in run.stdout.splitlines()) <= 80


@pytest.mark.parametrize("command", ["stop-all-streams", "teardown"])
@pytest.mark.parametrize("dry_run", [False, True], ids=["real", "dry-run"])
async def test_a_ca_bundle_that_is_not_one_is_refused_before_anything_is_sent(
    served: tuple[FakeVobiz, str], tmp_path: Path, command: str, dry_run: bool
) -> None:
    """
    --ca-bundle naming a file with no certificate: exit 2 at once, naming the option.

    It used to fail every target with "ConfigurationError ... verify=bad.pem"
    (a Python keyword), exit 1, and print a retry command repeating the bad
    bundle; the dry run said nothing and exited 0.
    """
    fake, base_url = served
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    args: list[str | Path] = [command, "c-1", "c-2", "--ca-bundle", bad]
    args += ["--dry-run"] if dry_run else []
    run = await vobiz_async(*args, env=cli_env(fake, base_url), cwd=tmp_path)

    assert run.status == 2, run
    assert f"--ca-bundle {bad}" in run.stderr
    assert "verify=" not in run.stderr
    assert "retry-failed" not in run.stdout + run.stderr
    assert fake.request_count == 0


async def test_ctrl_c_under_rate_counts_queued_targets_as_not_attempted(tmp_path: Path) -> None:
    """
    Targets waiting for --rate's pacing at Ctrl-C were never sent: not attempted, no report line.

    Only a request handed to the transport is "in flight, may have been
    applied". The fake answers at once, so at most the request sent last can
    be unanswered; the other 50-odd queued by --concurrency are not attempted.
    """
    fake = FakeVobiz(open_world=True)
    calls = written(tmp_path / "calls.txt", CALLS[:60], header="call_uuid")
    report = tmp_path / "r.jsonl"
    async with fake.serve() as base_url:
        proc = await asyncio.create_subprocess_exec(
            SCRIPT,
            "stop-all-streams",
            str(calls),
            "--rate",
            "2",
            "--report",
            str(report),
            "--json",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=cli_env(fake, base_url),
        )
        await asyncio.wait_for(fake.wait_for_requests(3), timeout=60)
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        sent = fake.request_count
    assert proc.returncode == 130, err.decode()
    summary = json.loads(out)
    assert summary["interrupted_in_flight"] <= 1, summary
    assert summary["stopped"] + summary["interrupted_in_flight"] == sent, summary
    assert summary["not_attempted"] == 60 - sent, summary
    outcomes = [line["outcome"] for line in report_lines(report)]
    assert len(outcomes) == sent
    for never in NEVER_SHOWN:
        assert never not in err.decode()


async def test_targets_paced_by_rate_are_not_shown_as_unanswered(tmp_path: Path) -> None:
    """
    With --rate 0.2 and a server answering at once, progress never says "no answer".

    Targets waiting for the pacing have sent nothing: they are not requests
    in flight. The second progress line (4 s in) is read, then Ctrl-C.
    """
    fake = FakeVobiz(open_world=True)
    calls = written(tmp_path / "calls.txt", CALLS[:5], header="call_uuid")
    async with fake.serve() as base_url:
        proc = await asyncio.create_subprocess_exec(
            SCRIPT,
            "stop-all-streams",
            str(calls),
            "--rate",
            "0.2",
            "--report",
            str(tmp_path / "r.jsonl"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=cli_env(fake, base_url),
        )
        assert proc.stderr is not None
        progress: list[str] = []
        async with asyncio.timeout(60):
            while len(progress) < 2:
                line = (await proc.stderr.readline()).decode()
                assert line, progress
                if line.startswith("progress:"):
                    progress.append(line)
        proc.send_signal(signal.SIGINT)
        _, rest = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 130, rest.decode()
    assert not [line for line in progress if "no answer" in line], progress
    assert "in flight" not in "".join(progress)


async def test_a_broken_ssl_cert_file_matters_only_where_tls_is_spoken(tmp_path: Path) -> None:
    """
    SSL_CERT_FILE with no certificate: refused (exit 2, naming it) for an https base URL.

    A plain-http loopback base URL never reads it, and is not refused for it.
    """
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    fake = FakeVobiz()
    for base_url, status in (
        ("https://vobiz.example/api/v1", 2),
        ("http://127.0.0.1:9/api/v1", 0),
    ):
        env = cli_env(fake, base_url, SSL_CERT_FILE=str(bad))
        run = await vobiz_async("stop-all-streams", "c-1", "--dry-run", env=env, cwd=tmp_path)
        assert run.status == status, run
        if status:
            assert f"SSL_CERT_FILE={bad}" in run.stderr
