"""
The distributions are ready to publish.

Licence, metadata, a README that renders as a package description, and the
Pythons CI runs.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An sdist and a wheel built by the project's own backend, as `pip` or `build` would."""
    out = tmp_path_factory.mktemp("dist")
    build = (
        "import sys, hatchling.build as b;"
        "print(b.build_sdist(sys.argv[1])); print(b.build_wheel(sys.argv[1]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", build, str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    sdist, wheel = done.stdout.split()
    return out / sdist, out / wheel


def wheel_metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as zipped:
        name = next(n for n in zipped.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(zipped.read(name).decode())


def test_both_distributions_carry_the_mit_licence(dists: tuple[Path, Path]) -> None:
    """The LICENSE text ships in the sdist and the wheel, and says MIT as declared."""
    sdist, wheel = dists
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License")
    with tarfile.open(sdist) as tarred:
        names = tarred.getnames()
        member = next(n for n in names if n.endswith("/LICENSE"))
        extracted = tarred.extractfile(member)
        assert extracted is not None
        assert extracted.read().decode() == licence
    with zipfile.ZipFile(wheel) as zipped:
        member = next(n for n in zipped.namelist() if n.endswith("licenses/LICENSE"))
        assert zipped.read(member).decode() == licence
    metadata = wheel_metadata(wheel)
    assert metadata["License-Expression"] == "MIT"


def test_readme_renders_as_the_package_description(dists: tuple[Path, Path]) -> None:
    """
    The package index's description has no repository-relative link.

    Each link or image is absolute or an in-page anchor.
    """
    metadata = wheel_metadata(dists[1])
    assert metadata["Description-Content-Type"] == "text/markdown"
    description = metadata.get_payload()
    assert isinstance(description, str)
    assert "## Testing your code against a fake Vobiz" in description
    targets = re.findall(r"\]\(([^)\s]+)\)", description)
    relative = [t for t in targets if not t.startswith(("https://", "http://", "#"))]
    assert relative == []


def test_claimed_pythons_are_the_ones_ci_runs(dists: tuple[Path, Path]) -> None:
    """The version classifiers list 3.11 (CI's default Python) and each Python CI loops over."""
    metadata = wheel_metadata(dists[1])
    claimed = {
        c.rsplit(" :: ", 1)[1]
        for c in metadata.get_all("Classifier") or []
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    ci = (ROOT / ".ci" / "run").read_text()
    looped = re.search(r"for version in (.*); do", ci)
    assert looped
    ran = {"3.11"} | {v.removeprefix("python") for v in looped.group(1).split()}
    assert claimed == ran
    assert metadata["Requires-Python"] == ">=3.11"
