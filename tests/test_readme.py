"""
The README's examples run as written.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

README = Path(__file__).parent.parent / "README.md"


def python_block(after_heading: str) -> str:
    text = README.read_text()
    section = text[text.index(after_heading) :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, f"no python block after {after_heading!r}"
    return match.group(1)


async def test_fake_vobiz_example_passes() -> None:
    """The example pytest test for users' bots is a passing test."""
    namespace: dict[str, Any] = {}
    exec(python_block("## Testing your code against a fake Vobiz"), namespace)  # noqa: S102
    await namespace["test_bot_stops_its_stream_exactly_once"]()


def test_setup_is_two_commands_that_ci_mirrors() -> None:
    """The README's set-up is the demo command and .ci/run, which runs the dev checks."""
    text = README.read_text()
    assert "pip install -e '.[cli]' && .venv/bin/vobiz-async demo" in text
    assert "$ bash .ci/run" in text
    ci = (README.parent / ".ci" / "run").read_text()
    for step in (
        "python3 -m venv .venv",
        "pip install",
        "-e '.[dev]'",
        "ruff check .",
        "ruff format --check .",
        "mypy --strict vobiz_async",
        "pytest --cov",
    ):
        assert step in ci, step


def test_fake_vobiz_example_passes_in_a_fresh_project(tmp_path: Path) -> None:
    """
    The example passes when copied into a project with no pytest configuration.

    pytest-asyncio's default strict mode collects it and runs it, not skips it.
    """
    (tmp_path / "test_bot.py").write_text(python_block("## Testing your code against a fake Vobiz"))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_bot.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout, done.stdout
    assert "warning" not in done.stdout.lower(), done.stdout
