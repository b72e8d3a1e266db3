"""The documentation stands on its own: no page or comment cites a design note kept outside the
repository, and every relative link between the pages resolves."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the design notes the project started from; docs/background.md carries what matters of them
OUTSIDE_NOTES = ("BRIEF.md", "BRIEF section", "EXPERIMENTS.md", "SEED_NOTES", "CONVENTIONS.md")
TEXT_DIRS = ("docs", "engine", "cli", "stream", "evaluation", "neurogate", "bench", "ops")
SUFFIXES = {".md", ".py", ".yml", ".yaml", ".toml"}
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _texts() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "CHANGELOG.md"]
    for d in TEXT_DIRS:
        files += [p for p in (ROOT / d).rglob("*") if p.suffix in SUFFIXES]
    return files


def test_no_citation_of_documents_outside_the_repository() -> None:
    cited = [f"{p.relative_to(ROOT)}: {note}" for p in _texts() for note in OUTSIDE_NOTES
             if note in p.read_text(encoding="utf-8")]
    assert cited == []


def test_relative_links_between_pages_resolve() -> None:
    broken = []
    for page in [ROOT / "README.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").glob("*.md")]:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_the_architecture_map_names_every_module() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    rooms = ("engine", "engine/stores", "stream", "cli", "evaluation", "neurogate")
    missing = [f"{room}/{p.name}" for room in rooms for p in sorted((ROOT / room).glob("*.py"))
               if p.name != "__init__.py" and f"`{room}/{p.name}`" not in page]
    assert missing == []
