"""The documents agree with the code: the error catalog, the settings, and every link between them.

These read files of the repository only; a missing document or table fails, it never skips.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.core.errors import ErrorCode
from app.runtime.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MARKDOWN = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]

_FENCE_RE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
_INLINE_CODE_RE = re.compile(r"`[^`\n]*`")
_LINK_RE = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_REFERENCE_RE = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.MULTILINE)
_DELIMITER_RE = re.compile(r"^\s*\|(\s*:?-+:?\s*\|)+\s*$")
_HEADING_RE = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def table_rows(text: str, header: list[str]) -> list[list[str]]:
    """The body rows of the first markdown table whose header cells are `header` (case-insensitive)."""
    lines = text.splitlines()
    for i, line in enumerate(lines[:-1]):
        if _cells(line) == header and _DELIMITER_RE.match(lines[i + 1]):
            rows = []
            for row in lines[i + 2 :]:
                if not row.strip().startswith("|"):
                    break
                rows.append(_cells(row, lower=False))
            return rows
    raise AssertionError(f"no table with the header {' | '.join(header)}")


def _cells(line: str, *, lower: bool = True) -> list[str]:
    if not line.strip().startswith("|"):
        return []
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    return [c.lower() for c in cells] if lower else cells


def _prose(text: str) -> str:
    """The text without code blocks and inline code, where brackets are not links."""
    return _INLINE_CODE_RE.sub("", _FENCE_RE.sub("", text))


def anchors(text: str) -> set[str]:
    """Heading anchors as GitHub makes them: lower case, punctuation dropped, spaces to hyphens,
    repeats numbered."""
    seen: dict[str, int] = {}
    found = set()
    for heading in _HEADING_RE.findall(_FENCE_RE.sub("", text)):
        plain = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading)
        slug = re.sub(r"[^\w\- ]", "", plain.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links(path: Path) -> list[str]:
    text = _prose(path.read_text())
    targets = _LINK_RE.findall(text) + _REFERENCE_RE.findall(text)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.IGNORECASE)]


def test_every_error_code_is_in_the_catalog_table_with_its_status() -> None:
    rows = table_rows((DOCS / "errors.md").read_text(), ["code", "status", "when"])
    documented: dict[str, str] = {}
    for code, status, when in (row[:3] for row in rows):
        name = code.strip("`")
        assert name not in documented, f"{name} is in the catalog table twice"
        assert when, f"{name}: say when it happens"
        documented[name] = status
    expected = {code.value: str(code.status) for code in ErrorCode}
    assert documented == expected


def test_every_setting_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text()
    missing = [name.upper() for name in Settings.model_fields if not re.search(rf"`{name.upper()}`", text)]
    assert missing == [], f"settings missing from docs/configuration.md: {missing}"


def test_the_configuration_table_names_only_real_settings() -> None:
    rows = table_rows((DOCS / "configuration.md").read_text(), ["variable", "default", "meaning"])
    named = {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row[0])}
    assert named, "the settings table names no variable"
    assert named - {name.upper() for name in Settings.model_fields} == set()


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_files_in_the_repository(path: Path) -> None:
    broken = []
    for link in relative_links(path):
        target, _, fragment = link.partition("#")
        resolved = (path.parent / target).resolve() if target else path
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            broken.append(link)
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved.read_text()):
            broken.append(link)
    assert broken == [], f"{path.relative_to(ROOT)}: broken links {broken}"


def test_the_readme_links_every_document() -> None:
    linked = {(ROOT / link.partition("#")[0]).resolve() for link in relative_links(ROOT / "README.md")}
    expected = {
        "configuration.md",
        "api.md",
        "errors.md",
        "live-status.md",
        "operations.md",
        "performance.md",
        "architecture.md",
        "embedded-database.md",
    }
    present = {p.name for p in DOCS.glob("*.md")}
    assert expected <= present, f"missing documents: {sorted(expected - present)}"
    assert [p.name for p in DOCS.glob("*.md") if p.resolve() not in linked] == []


def architecture_tree(text: str) -> set[str]:
    """The module paths listed in the fenced block under `## The tree`: two spaces per level,
    directories end with a slash, a description may follow a name."""
    sections = re.split(r"^## The tree\s*$", text, maxsplit=1, flags=re.MULTILINE)
    assert len(sections) == 2, "no section ## The tree"
    section = sections[1]
    block = _FENCE_RE.search(section)
    assert block is not None, "no tree block under ## The tree"
    modules: set[str] = set()
    parents: list[str] = []
    for line in block.group(0).splitlines()[1:-1]:
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        name = line.split()[0]
        parents = parents[:depth]
        if name.endswith("/"):
            parents.append(name.rstrip("/"))
        elif name.endswith(".py"):
            modules.add("/".join([*parents, name]))
    return modules


def test_the_architecture_document_lists_every_module_of_the_tree() -> None:
    listed = architecture_tree((DOCS / "architecture.md").read_text())
    present = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "app").rglob("*.py")
        if p.name != "__init__.py" and "__pycache__" not in p.parts
    }
    assert sorted(present - listed) == [], "modules missing from docs/architecture.md"
    assert sorted(listed - present) == [], "docs/architecture.md lists modules that do not exist"


def test_the_tree_parser_follows_indentation() -> None:
    text = "## The tree\n```\napp/\n  a.py   x\n  core/\n    b.py  y\n  c.py\ntests/  z\n```\n"
    assert architecture_tree(text) == {"app/a.py", "app/core/b.py", "app/c.py"}


def test_the_link_checker_sees_broken_links(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# A title\n[ok](page.md#a-title) [gone](missing.md) [anchor](#nope) `[code](x.md)`\n"
        "```\n[fenced](y.md)\n```\n[web](https://example.com)\n"
    )
    assert relative_links(page) == ["page.md#a-title", "missing.md", "#nope"]
    assert anchors(page.read_text()) == {"a-title"}


def test_the_table_parser_reads_rows_and_refuses_a_missing_table() -> None:
    text = "| code | status | when |\n|---|---|---|\n| `A` | 400 | x |\n| B | 401 | y |\n\nafter\n"
    assert table_rows(text, ["code", "status", "when"]) == [["`A`", "400", "x"], ["B", "401", "y"]]
    with pytest.raises(AssertionError):
        table_rows(text, ["variable", "default", "meaning"])
