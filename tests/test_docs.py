"""The docs stand alone and stay true: the README fits on a page, no file of the project
points outside the repository, every link between pages resolves, and the generated
reference pages are what the code generates today."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_the_readme_fits_on_a_page_and_starts_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) <= 12 * 1024
    block = text.split("```sh", 1)[1].split("```", 1)[0]
    assert "./scripts/setup && .venv/bin/poold demo" in block
    assert "./scripts/test" in block


def test_nothing_points_outside_the_repository() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in tracked:
        path = ROOT / name
        if path.suffix in {".png", ".whl"} or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        # Spelled in two parts, so this file does not name them itself.
        assert "../" + "shared" not in text, name
        assert "DESIGN" + ".md" not in text, name


def test_every_link_and_named_path_resolves() -> None:
    for page in PAGES:
        text = page.read_text()
        for target in re.findall(r"\]\(([^)#\s]+)\)", text):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), (page.name, target)
        for named in re.findall(
            r"`((?:docs|poold|accounting|simulation|tests|bench|configs|scripts)/[\w./-]+)`", text
        ):
            assert (ROOT / named.rstrip(".")).exists(), (page.name, named)


def test_the_generated_reference_is_current() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_reference.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
