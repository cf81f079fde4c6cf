"""Every Python example of README.md and docs/guide/*.md runs as written.

The ```python blocks of one file run in order, in one namespace, in an empty temporary
working directory, offline. A block that genuinely needs real weights or a GPU is skipped
when the line just before its opening fence is ``<!-- docs-test: skip (REASON) -->``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = sorted([REPO_ROOT / "README.md", *(REPO_ROOT / "docs" / "guide").glob("*.md")])
SKIP_MARKER = re.compile(r"<!--\s*docs-test:\s*skip\s*\((?P<reason>[^)]*)\)\s*-->")
_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")


@dataclass(frozen=True)
class Block:
    """One fenced Python block of a Markdown file."""

    path: Path
    line: int  # 1-based line of the opening fence
    code: str
    skip_reason: str | None


def python_blocks(path: Path) -> list[Block]:
    """The ```python blocks of a Markdown file, with the skip reason of those marked to skip.

    Raises:
        ValueError: A block is not closed, or a skip marker has no reason.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        info = opening["info"].strip().split()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == fence[0] * len(fence)), None)
        if end is None:
            raise ValueError(f"{path}:{i + 1}: code block is never closed")
        if info and info[0] in ("python", "py"):
            code = "\n".join(line[indent:] for line in lines[i + 1 : end]) + "\n"
            blocks.append(Block(path, i + 1, code, _skip_reason(path, lines, i)))
        i = end + 1
    return blocks


def _skip_reason(path: Path, lines: list[str], fence: int) -> str | None:
    before = lines[fence - 1].strip() if fence > 0 else ""
    if "docs-test" not in before:
        return None
    marker = SKIP_MARKER.fullmatch(before)
    if marker is None or not marker["reason"].strip():
        raise ValueError(
            f"{path}:{fence}: write the marker as '<!-- docs-test: skip (REASON) -->', with a reason"
        )
    return marker["reason"].strip()


def _files_with_blocks() -> list[Path]:
    return [p for p in DOC_FILES if python_blocks(p)]


@pytest.mark.parametrize("path", _files_with_blocks(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_python_examples_run(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs_example__"}
    ran = 0
    for block in python_blocks(path):
        if block.skip_reason is not None:
            continue
        where = f"{path.relative_to(REPO_ROOT)}:{block.line}"
        try:
            exec(compile(block.code, where, "exec"), namespace)
        except ModuleNotFoundError as exc:
            if exc.name in ("torch", "transformers", "peft", "bitsandbytes"):
                pytest.skip(f"{where} needs the [train] extra ({exc.name} is not installed)")
            raise
        except Exception as exc:
            raise AssertionError(f"the example at {where} fails: {type(exc).__name__}: {exc}") from exc
        ran += 1
    assert ran or all(b.skip_reason for b in python_blocks(path))


def test_the_readme_has_runnable_python() -> None:
    assert any(b.skip_reason is None for b in python_blocks(REPO_ROOT / "README.md"))


def test_blocks_and_skip_markers_are_read_as_documented(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "Text\n\n```python\nx = 1\n```\n\n"
        "<!-- docs-test: skip (needs real weights) -->\n```python\nload_the_8b_model()\n```\n\n"
        "<!-- docs-test: skip (needs a GPU) -->\n\n```python\ny = x + 1\n```\n\n"
        "```bash\nmedvqa demo\n```\n\n"
        "- a list item:\n\n  ```python\n  z = 3\n  ```\n",
        encoding="utf-8",
    )
    blocks = python_blocks(page)
    assert [(b.line, b.code, b.skip_reason) for b in blocks] == [
        (3, "x = 1\n", None),
        (8, "load_the_8b_model()\n", "needs real weights"),
        (14, "y = x + 1\n", None),  # a marker applies only to the very next line
        (24, "z = 3\n", None),
    ]
    page.write_text("<!-- docs-test: skip -->\n```python\nx = 1\n```\n", encoding="utf-8")
    with pytest.raises(ValueError, match="with a reason"):
        python_blocks(page)
