"""The user documentation's relative links resolve to files in the repository (web links and anchors are not checked)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
_INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFDEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)


def relative_links(text: str) -> list[str]:
    """Link targets of a markdown text that point into the repository: no scheme, no pure anchor, anchor dropped."""
    text = _FENCE.sub("", text)
    text = _CODE.sub("code", text)
    out = []
    for target in _INLINE.findall(text) + _REFDEF.findall(text):
        if not target or target.startswith("#") or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):
            continue
        out.append(target.split("#", 1)[0].split("?", 1)[0])
    return [t for t in out if t]


def broken_links(md: Path) -> list[str]:
    return [t for t in relative_links(md.read_text(encoding="utf-8")) if not (md.parent / t).exists()]


DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("md", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(md):
    assert md.exists(), f"{md.relative_to(ROOT)} is missing"
    bad = broken_links(md)
    assert not bad, f"{md.relative_to(ROOT)} links to files that do not exist: {bad}"


def test_docs_folder_and_readme_links_are_checked():
    assert (ROOT / "docs").is_dir() and len(DOCS) >= 3
    assert relative_links((ROOT / "README.md").read_text(encoding="utf-8")), "README.md has no relative links to check"


def test_checker_finds_a_broken_link_and_ignores_web_links_anchors_and_code(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "there.md").write_text("x")
    md = tmp_path / "page.md"
    md.write_text(
        "[ok](sub/there.md#part) ![img](sub/there.md) [web](https://example.org/x.md) [anchor](#top)\n"
        "[gone](sub/missing.md) `[not a link](nowhere.md)`\n"
        "```\n[also code](nowhere2.md)\n```\n"
        "[ref]: sub/absent.md\n"
    )
    assert broken_links(md) == ["sub/missing.md", "sub/absent.md"]
