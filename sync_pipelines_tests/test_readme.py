"""The README stays true and short: its Layout block matches the tree (every path it lists
exists; every tracked top-level directory and every subpackage is listed), it keeps under 3,000
words, its links into docs/ resolve, and neither it nor docs/ points at issues or future work."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: the packages whose subpackages the Layout lists
PACKAGES = ("sync_pipelines", "peers/sync_pipelines_peers")
MAX_WORDS = 3000


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def _section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def _layout_paths() -> list[str]:
    """The first word of each line of the Layout section's fenced block: a path ending in '/'."""
    block = re.search(r"^```\n(.*?)^```", _section(_readme(), "Layout"), re.S | re.M)
    assert block, "the Layout section has no fenced block"
    paths = [line.split()[0] for line in block.group(1).splitlines() if line.strip()]
    assert all(p.endswith("/") for p in paths), f"every entry is a directory: {paths}"
    return [p.rstrip("/") for p in paths]


def _tracked_top_level_dirs() -> set[str]:
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    return {f.split("/", 1)[0] for f in files if "/" in f}


def _subpackages(package: str) -> set[str]:
    base = ROOT / package
    return {
        str(init.parent.relative_to(ROOT))
        for init in base.rglob("__init__.py")
        if init.parent != base and "__pycache__" not in init.parts
    }


def test_every_path_the_layout_lists_exists():
    missing = [p for p in _layout_paths() if not (ROOT / p).is_dir()]
    assert not missing, f"README's Layout lists directories that do not exist: {missing}"


def test_the_layout_lists_every_tracked_top_level_directory():
    listed = set(_layout_paths())
    unlisted = _tracked_top_level_dirs() - listed
    assert not unlisted, f"README's Layout misses top-level directories: {sorted(unlisted)}"


@pytest.mark.parametrize("package", PACKAGES)
def test_the_layout_lists_every_subpackage(package):
    unlisted = _subpackages(package) - set(_layout_paths())
    assert not unlisted, f"README's Layout misses subpackages of {package}: {sorted(unlisted)}"


def test_the_readme_is_at_most_3000_words():
    words = len(_readme().split())
    assert words <= MAX_WORDS, f"README.md has {words} words; move detail to docs/"


def test_the_readme_shows_the_two_commands_first():
    commands = _section(_readme(), "The two commands")
    assert "make demo" in commands and "make test" in commands
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def _documents() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("**/*.md"))]


def test_every_relative_link_in_the_readme_and_docs_resolves():
    broken = []
    for doc in _documents():
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = target.split("#", 1)[0]
            if not (doc.parent / path).exists():
                broken.append(f"{doc.relative_to(ROOT)} → {target}")
    assert not broken, f"broken links: {broken}"


def test_the_readme_links_into_docs():
    links = re.findall(r"\]\((docs/[^)#\s]+)", _readme())
    assert links, "README links to no page under docs/"
    assert {Path(link).name for link in links} == {p.name for p in (ROOT / "docs").glob("*.md")}


_FORBIDDEN = re.compile(
    r"issue\s*#\s*\d+|\bissue\s+\d+\b|#\d{1,4}\b|(?:in|with|by)\s+(?:a|the)\s+"
    r"(?:later|future|next|reliability)\s+(?:issue|session|pr)|"
    r"later issue|future session|the issue's",
    re.I,
)


def test_no_document_points_at_issues_or_future_work():
    found = []
    for doc in [*_documents(), *sorted((ROOT / "sql").glob("*.md"))]:
        for n, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            if match := _FORBIDDEN.search(line):
                found.append(f"{doc.relative_to(ROOT)}:{n}: {match.group(0)!r}")
    assert not found, f"references to issues or future work: {found}"
