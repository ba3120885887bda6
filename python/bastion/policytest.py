"""Table-driven tests for policy bundles: ``bastion test POLICY_DIR``.

Cases live next to the policies, in ``POLICY_DIR/cases/*.yaml``: a list of
entries such as::

    - name: refunds need a human
      hook: before_tool
      call: {agent_id: support-bot, agent_role: support, tool: issue_refund,
             operation: write, resource_id: order/A-1}
      expect:
        effect: require_approval          # allow | modify | require_approval | deny
        policies: [write-approval]        # the deciding policies (any order)
        reasons: ["needs a human"]        # substrings of the reasons' messages
        redactions: ["[EMAIL]"]           # labels of the redactions, or a count
        redacted: "Customer [EMAIL] ..."  # the hook's text after redaction
        risk_level: high
        model_downgrade: gpt-4o-mini
        errors: 0                         # failed policies: a count or a list of kinds

Every key of ``expect`` but ``effect`` is optional.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from bastion._core import Decision, Error, PolicyEngine, parse_yaml

_EXPECT_KEYS = {
    "effect", "policies", "reasons", "redactions", "redacted", "risk_level",
    "model_downgrade", "errors",
}
# The call field a hook's text comes from, which is also its redaction target.
_TEXT_OF_HOOK = {
    "before_model": "input", "before_tool": "input", "on_run_start": "input",
    "on_run_end": "output", "after_model": "output", "after_tool": "output",
    "on_chunk": "chunk",
}


class CaseFileError(Error, ValueError):
    """A case file that cannot be read as cases; the message names file and entry.

    A bastion.Error and a ValueError."""


@dataclasses.dataclass
class Case:
    file: str
    index: int
    name: str
    hook: str
    call: dict[str, Any]
    expect: dict[str, Any]

    @property
    def where(self) -> str:
        return f"{self.file}[{self.index}]"


@dataclasses.dataclass
class CaseResult:
    case: Case
    failures: list[str]
    decision: Decision | None

    @property
    def passed(self) -> bool:
        return not self.failures


def load_cases(bundle_dir: str | Path) -> list[Case]:
    """Every case in ``bundle_dir/cases/*.yaml``, in file and entry order."""
    cases_dir = Path(bundle_dir) / "cases"
    files = sorted(cases_dir.glob("*.yaml")) + sorted(cases_dir.glob("*.yml"))
    cases: list[Case] = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        entries = parse_yaml(text, str(path))
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise CaseFileError(f"{path}: expected a list of cases")
        for i, entry in enumerate(entries):
            where = f"{path}[{i}]"
            if not isinstance(entry, dict):
                raise CaseFileError(f"{where}: a case must be a mapping")
            unknown = set(entry) - {"name", "hook", "call", "expect"}
            if unknown:
                raise CaseFileError(f"{where}: unknown keys {sorted(unknown)}")
            for key in ("name", "hook", "expect"):
                if key not in entry:
                    raise CaseFileError(f"{where}: missing '{key}'")
            expect = entry["expect"]
            if not isinstance(expect, dict) or "effect" not in expect:
                raise CaseFileError(f"{where}: 'expect' must be a mapping with an 'effect'")
            unknown = set(expect) - _EXPECT_KEYS
            if unknown:
                raise CaseFileError(
                    f"{where}: unknown expectations {sorted(unknown)} "
                    f"(known: {', '.join(sorted(_EXPECT_KEYS))})"
                )
            call = entry.get("call") or {}
            if not isinstance(call, dict):
                raise CaseFileError(f"{where}: 'call' must be a mapping")
            cases.append(Case(str(path), i, str(entry["name"]), str(entry["hook"]), call, expect))
    return cases


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def check(case: Case, decision: Decision) -> list[str]:
    """What differs between the decision and the case's expectations."""
    exp = case.expect
    failures: list[str] = []
    if decision.effect != exp["effect"]:
        failures.append(f"effect: expected {exp['effect']}, got {decision.effect}")
    deciders = sorted({r["policy_id"] for r in decision.reasons})
    if "policies" in exp and deciders != sorted(set(_as_list(exp["policies"]))):
        failures.append(f"deciding policies: expected {sorted(set(_as_list(exp['policies'])))}, "
                        f"got {deciders}")
    messages = [r["message"].lower() for r in decision.reasons]
    for part in _as_list(exp.get("reasons", [])):
        if not any(str(part).lower() in m for m in messages):
            failures.append(f"reasons: no reason contains {part!r} (reasons: {messages})")
    if "redactions" in exp:
        labels = sorted(r["label"] for r in decision.redactions)
        want = exp["redactions"]
        if isinstance(want, int):
            if len(labels) != want:
                failures.append(f"redactions: expected {want}, got {len(labels)} {labels}")
        elif labels != sorted(_as_list(want)):
            failures.append(f"redactions: expected {sorted(_as_list(want))}, got {labels}")
    if "redacted" in exp:
        field = _TEXT_OF_HOOK.get(case.hook, "input")
        got = decision.apply(str(case.call.get(field, "")), field)
        if got != exp["redacted"]:
            failures.append(f"redacted text: expected {exp['redacted']!r}, got {got!r}")
    if "risk_level" in exp and decision.risk_level != exp["risk_level"]:
        failures.append(f"risk_level: expected {exp['risk_level']}, got {decision.risk_level}")
    if "model_downgrade" in exp and decision.model_downgrade != exp["model_downgrade"]:
        failures.append(f"model_downgrade: expected {exp['model_downgrade']}, "
                        f"got {decision.model_downgrade}")
    errors = decision.errors
    want_errors = exp.get("errors", 0)
    if isinstance(want_errors, int):
        if len(errors) != want_errors:
            failures.append(f"errors: expected {want_errors}, got {len(errors)}: "
                            + "; ".join(f"{e['policy_id']}: {e['message']}" for e in errors))
    elif sorted(e["kind"] for e in errors) != sorted(_as_list(want_errors)):
        failures.append(f"errors: expected kinds {sorted(_as_list(want_errors))}, "
                        f"got {sorted(e['kind'] for e in errors)}")
    return failures


def run_case(engine: PolicyEngine, case: Case) -> CaseResult:
    try:
        decision = engine.evaluate(case.hook, case.call)
    except (TypeError, ValueError) as e:
        return CaseResult(case, [f"bad case: {e}"], None)
    return CaseResult(case, check(case, decision), decision)


def run_bundle(bundle_dir: str | Path, name_filter: str | None = None) -> list[CaseResult]:
    engine = PolicyEngine.load(str(bundle_dir))
    pattern = re.compile(name_filter) if name_filter else None
    return [run_case(engine, c) for c in load_cases(bundle_dir)
            if pattern is None or pattern.search(c.name)]


def _explain(decision: Decision) -> str:
    parts = []
    for o in decision.explain:
        if not o["applied"]:
            continue
        verdict = "FAILED" if o["failed"] else (o["effect"] or "no opinion")
        parts.append(f"{o['policy_id']}={verdict}")
    return ", ".join(parts) or "no policy applied"


def report(results: Iterable[CaseResult], out: TextIO, verbose: bool = False) -> tuple[int, int]:
    passed = failed = 0
    current_file = None
    for r in results:
        if r.case.file != current_file:
            current_file = r.case.file
            out.write(f"{current_file}\n")
        if r.passed:
            passed += 1
            out.write(f"  PASS  {r.case.name}\n")
        else:
            failed += 1
            out.write(f"  FAIL  {r.case.name}  ({r.case.where})\n")
            for f in r.failures:
                out.write(f"        {f}\n")
        if r.decision is not None and (verbose or not r.passed):
            out.write(f"        explain: {_explain(r.decision)}\n")
    out.write(f"{passed} passed, {failed} failed\n")
    return passed, failed


def main(bundle_dirs: Sequence[str], *, verbose: bool = False, as_json: bool = False,
         name_filter: str | None = None, out: TextIO = sys.stdout) -> int:
    all_results: list[CaseResult] = []
    for d in bundle_dirs:
        all_results.extend(run_bundle(d, name_filter))
    if as_json:
        for r in all_results:
            out.write(json.dumps({"file": r.case.file, "name": r.case.name, "passed": r.passed,
                                  "failures": r.failures}) + "\n")
        failed = sum(not r.passed for r in all_results)
    else:
        _, failed = report(all_results, out, verbose)
    if not all_results:
        out.write("no cases found (expected POLICY_DIR/cases/*.yaml)\n")
        return 1
    return 1 if failed else 0
