"""The type stubs describe what the compiled module really has."""

from __future__ import annotations

import ast
from pathlib import Path

import bastion
from bastion import _core

STUBS = Path(bastion.__file__).parent / "_core.pyi"


def test_every_stubbed_class_and_method_exists() -> None:
    tree = ast.parse(STUBS.read_text())
    missing = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            if any(isinstance(b, ast.Name) and b.id == "TypedDict" for b in node.bases):
                continue  # a type-only declaration (the shape of a dict)
            if not hasattr(_core, node.name):
                missing.append(node.name)
                continue
            cls = getattr(_core, node.name)
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and not hasattr(cls, item.name):
                    missing.append(f"{node.name}.{item.name}")
        elif isinstance(node, ast.FunctionDef) and not hasattr(_core, node.name):
            missing.append(node.name)
    assert missing == []


def test_every_public_class_is_stubbed() -> None:
    tree = ast.parse(STUBS.read_text())
    stubbed = {n.name for n in tree.body if isinstance(n, ast.ClassDef | ast.FunctionDef)}
    stubbed |= {n.target.id for n in tree.body
                if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    public = {name for name in dir(_core) if not name.startswith("_")}
    assert public - stubbed == set()
