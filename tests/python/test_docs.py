"""The Python examples of the user guides run as written."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Guides whose every ```python block is a complete, runnable example.
RUNNABLE_GUIDES = ["cost.md", "slo.md", "guarantees.md", "evidence.md", "fleet.md"]


def python_blocks(guide: str) -> list[tuple[int, str]]:
    text = (REPO / "docs" / guide).read_text()
    blocks = []
    for m in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M):
        blocks.append((text.count("\n", 0, m.start()) + 1, m.group(1)))
    return blocks


CASES = [(guide, line, code) for guide in RUNNABLE_GUIDES for line, code in python_blocks(guide)]


def test_every_guide_has_examples() -> None:
    for guide in RUNNABLE_GUIDES:
        assert python_blocks(guide), guide


@pytest.mark.parametrize("guide,line,code", CASES, ids=[f"{g}:{n}" for g, n, _ in CASES])
def test_example_runs(guide: str, line: int, code: str, tmp_path: Path,
                      request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if guide == "fleet.md":  # its examples talk to a real Redis
        monkeypatch.setenv("REDIS_URL", request.getfixturevalue("redis_server").url)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(code, f"docs/{guide}:{line}", "exec"), {"__name__": "__doc_example__"})
    finally:
        os.chdir(cwd)
