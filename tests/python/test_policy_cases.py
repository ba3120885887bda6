"""The shipped policy bundles' table-driven cases, run through the installed
package exactly as `bastion test` runs them, plus the runner's own behaviour."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest

import bastion
from bastion import policytest

REPO = Path(__file__).resolve().parents[2]
BUNDLES = sorted(p for p in (REPO / "policies").iterdir() if (p / "cases").is_dir())
CASES = [(b, c) for b in BUNDLES for c in policytest.load_cases(b)]
BASTION = str(Path(sys.executable).with_name("bastion"))


def test_there_are_bundles_and_cases() -> None:
    assert BUNDLES, "no policy bundle with cases/ under policies/"
    assert len(CASES) >= 15


@pytest.mark.parametrize(("bundle", "case"), CASES, ids=[f"{b.name}:{c.name}" for b, c in CASES])
def test_shipped_case(bundle: Path, case: policytest.Case) -> None:
    engine = bastion.PolicyEngine.load(str(bundle))
    result = policytest.run_case(engine, case)
    assert result.passed, "\n".join(result.failures)


def test_installed_default_bundle_matches_the_repository() -> None:
    installed = Path(bastion.default_policies())
    source = REPO / "policies" / "default"
    cmp = filecmp.dircmp(installed, source)
    assert not cmp.left_only and not cmp.right_only and not cmp.diff_files, (
        cmp.left_only, cmp.right_only, cmp.diff_files)
    assert bastion.PolicyEngine.load(str(installed)).version == \
        bastion.PolicyEngine.load(str(source)).version


def test_cli_runs_cases_and_reports_each(tmp_path: Path) -> None:
    out = subprocess.run([BASTION, "test", str(REPO / "policies" / "default")],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "PASS  refunds need a human" in out.stdout
    assert out.stdout.strip().endswith(f"{len(policytest.load_cases(REPO / 'policies' / 'default'))} passed, 0 failed")


def _bundle_with_case(tmp_path: Path, expect: str) -> Path:
    (tmp_path / "cases").mkdir()
    (tmp_path / "p.lua").write_text(
        "return { id = 'p', before_tool = function(call)\n"
        "  if call.tool == 'rm' then return deny('rm is dangerous') end end }\n")
    (tmp_path / "cases" / "c.yaml").write_text(
        "- name: rm is denied\n  hook: before_tool\n  call: {tool: rm}\n"
        f"  expect: {expect}\n")
    return tmp_path


def test_cli_names_the_failing_case_and_what_differs(tmp_path: Path) -> None:
    bundle = _bundle_with_case(tmp_path, "{effect: allow, reasons: [safe]}")
    out = subprocess.run([BASTION, "test", str(bundle)], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 1
    assert "FAIL  rm is denied" in out.stdout
    assert "effect: expected allow, got deny" in out.stdout
    assert "no reason contains 'safe'" in out.stdout
    assert "explain: p=deny" in out.stdout
    assert "0 passed, 1 failed" in out.stdout


def test_cli_reports_a_broken_case_file(tmp_path: Path) -> None:
    bundle = _bundle_with_case(tmp_path, "{effcet: deny}")
    out = subprocess.run([BASTION, "test", str(bundle)], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 2
    assert "c.yaml[0]" in out.stderr and "'effect'" in out.stderr


def test_cli_reports_a_broken_policy_with_file_and_line(tmp_path: Path) -> None:
    bundle = _bundle_with_case(tmp_path, "{effect: deny}")
    (bundle / "p.lua").write_text("return {\n  before_tool = function(call)\n    return deny(\n  end }\n")
    out = subprocess.run([BASTION, "test", str(bundle)], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 2
    assert "p.lua:4:" in out.stderr


def test_yaml_errors_name_the_line() -> None:
    with pytest.raises(bastion.InvalidArgumentError,
                       match=r"cases\.yaml:3:1: malformed YAML: end of sequence flow"):
        bastion._core.parse_yaml("- a: 1\n- b: [1, 2\n", "cases.yaml")
