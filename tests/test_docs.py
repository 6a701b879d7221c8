"""The documentation stands alone: it links only to files the repository has."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_no_doc_points_outside_the_repository() -> None:
    """No document names ``../shared`` (users do not have it)."""
    offenders = [p.name for p in DOCS if "../shared" in p.read_text()]
    assert offenders == []


def test_every_relative_link_names_a_file_that_exists() -> None:
    """Each relative Markdown link resolves to a file of the repository."""
    broken = []
    for path in DOCS:
        for target in LINK.findall(path.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (path.parent / target).resolve().exists():
                broken.append(f"{path.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_the_readme_links_the_interface() -> None:
    """README links docs/INTERFACE.md, which names every task of the contract."""
    assert "(docs/INTERFACE.md)" in (ROOT / "README.md").read_text()
    interface = (ROOT / "docs" / "INTERFACE.md").read_text()
    for name in ("submit_order", "cancel_order", "fetch_quote", "rebalance", "sync_positions",
                 "escalate"):  # fmt: skip
        assert f"tasks.{name}" in interface
