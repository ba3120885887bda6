"""One exception hierarchy: every error Bastion raises is a bastion.Error,
named *Error; the former names are the same classes."""

from __future__ import annotations

from pathlib import Path

import pytest

import bastion
from bastion import policytest


def test_call_denied_error_is_a_bastion_error_and_a_runtime_error() -> None:
    assert issubclass(bastion.CallDeniedError, bastion.Error)
    # LangGraph's default RetryPolicy does not retry RuntimeErrors.
    assert issubclass(bastion.CallDeniedError, RuntimeError)


def test_call_denied_is_the_same_class_as_call_denied_error() -> None:
    assert bastion.CallDenied is bastion.CallDeniedError
    assert "CallDeniedError" in bastion.__all__ and "CallDenied" in bastion.__all__
    err = bastion.CallDenied("call denied (p: no)")
    assert isinstance(err, bastion.CallDeniedError) and err.decision is None


def test_call_denied_error_from_decision_names_the_reasons() -> None:
    engine = bastion.PolicyEngine.from_sources([
        ("no.lua", 'return {id = "no", before_tool = function(call) return deny("never") end}'),
    ])
    decision = engine.evaluate("before_tool", {"tool": "x"})
    with pytest.raises(bastion.Error, match=r"tool call 'x' denied \(no: never\)") as caught:
        raise bastion.CallDeniedError.from_decision(decision, "tool call 'x'")
    assert type(caught.value) is bastion.CallDeniedError
    assert caught.value.decision is decision


def test_case_file_error_is_a_bastion_error_and_keeps_value_error(tmp_path: Path) -> None:
    assert issubclass(policytest.CaseFileError, bastion.Error)
    assert issubclass(policytest.CaseFileError, ValueError)
    (tmp_path / "cases").mkdir()
    (tmp_path / "cases" / "bad.yaml").write_text("just: a mapping\n", encoding="utf-8")
    with pytest.raises(bastion.Error, match="bad.yaml: expected a list of cases") as caught:
        policytest.load_cases(tmp_path)
    assert type(caught.value) is policytest.CaseFileError


@pytest.mark.parametrize("name", [n for n in bastion.__all__
                                  if n.endswith("Error") and n != "Error"])
def test_every_exported_error_derives_from_bastion_error(name: str) -> None:
    cls = getattr(bastion, name)
    assert issubclass(cls, bastion.Error), name
