"""The training package's layout: other modules use its public names, not its private modules."""

from __future__ import annotations

import ast
from pathlib import Path

import medvqa.training

SRC = Path(__file__).resolve().parents[2] / "src" / "medvqa"


def test_no_module_imports_a_public_training_name_from_a_private_module() -> None:
    public = set(medvqa.training.__all__)
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path.parent.name == "training":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("medvqa.training._"):
                names = {a.name for a in node.names} & public
                if names:
                    offenders.append(f"{path.relative_to(SRC)}:{node.lineno} {sorted(names)}")
    assert not offenders, "import these from medvqa.training instead: " + "; ".join(offenders)
