"""GuardedCall.chunk / finish_stream: streamed output held back where a pattern
could still grow, stopped by a deny, and summarized in the outcome record."""

from __future__ import annotations

from pathlib import Path

import pytest

import bastion
from helpers import guard_records as records

NOON = 1_795_262_400 * 10**9  # 2026-11-21T12:00:00Z


@pytest.fixture
def guard(tmp_path: Path) -> bastion.Guard:
    g = bastion.Guard.open(tmp_path / "bastion", clock=bastion.ManualClock(NOON))
    yield g
    g.close()


def stream(call: bastion.GuardedCall, chunks: list[str]) -> tuple[bool, str]:
    """Streams `chunks` and finishes; (stopped, everything released)."""
    released = []
    for c in chunks:
        stop, text = call.chunk(c)
        released.append(text)
        if stop:
            return True, "".join(released)
    stop, text = call.finish_stream()
    return stop, "".join(released) + text


@pytest.mark.parametrize("text, secret, label", [
    ("Mail alice@example.com now", "alice@example.com", "[EMAIL]"),
    ("Card 4111 1111 1111 1111 ok", "4111 1111 1111 1111", "[CREDIT_CARD]"),
    ("Call +1 415 555 2671 today", "+1 415 555 2671", "[PHONE]"),
    ("IBAN DE89 3704 0044 0532 0130 00.", "DE89 3704 0044 0532 0130 00", "[IBAN]"),
    ("key AKIAIOSFODNN7EXAMPLE here", "AKIAIOSFODNN7EXAMPLE", "[API_KEY]"),
])
def test_a_pattern_split_anywhere_is_released_only_redacted(
        guard: bastion.Guard, text: str, secret: str, label: str) -> None:
    whole = text.replace(secret, label)
    for i in range(1, len(text)):
        call = guard.begin_model("gpt-4o", "hi", agent_id="a")
        stopped, released = stream(call, [text[:i], text[i:]])
        call.end(released)
        assert not stopped
        assert released == whole, f"split at {i}"
    call = guard.begin_model("gpt-4o", "hi", agent_id="a")
    assert stream(call, list(text)) == (False, whole)  # one character at a time
    call.end(whole)


def test_held_text_comes_out_with_finish_stream(guard: bastion.Guard) -> None:
    call = guard.begin_model("gpt-4o", "hi", agent_id="a")
    assert call.chunk("Mail alice@exa") == (False, "Mail ")
    assert call.held_bytes == 9
    assert call.chunk("mple.com") == (False, "")
    assert call.held_bytes == 17
    assert call.finish_stream() == (False, "[EMAIL]")
    assert call.held_bytes == 0
    with pytest.raises(bastion.StateError, match="FinishStream"):
        call.chunk("more")
    with pytest.raises(bastion.StateError):
        call.finish_stream()
    call.end("Mail [EMAIL]")
    with pytest.raises(bastion.NotFoundError):
        call.chunk("after the end")


def test_a_deny_stops_the_stream_and_the_ledger_says_where(guard: bastion.Guard) -> None:
    call = guard.begin_model("gpt-4o", "hi", agent_id="a")
    assert call.chunk("This is for internal ") == (False, "This is for internal ")
    assert call.stream_stop is None
    assert call.chunk(text="use only, the plan") == (True, "")
    assert [r["policy_id"] for r in call.stream_stop.reasons] == ["forbidden-output"]
    assert call.chunk("and the rest") == (True, "")
    assert call.finish_stream() == (True, "")
    end = call.end("This is for internal use only, the plan")
    # What the caller passes as the output of a stopped stream is not shown.
    assert end.withheld and end.output.startswith("[withheld by policy:")
    assert end.decision.effect == "deny"
    outcome = records(guard)[-1]
    attributes = outcome["attributes"]
    assert outcome["effect"] == "deny"
    assert attributes["error"] == "stream_stopped"
    assert attributes["stream_stop_chunk"] == "2"
    assert attributes["stream_stop_byte"] == "21"
    assert attributes["stream_stop_policies"] == "forbidden-output"
    assert attributes["stream_chunks"] == "2"
    assert any(r["policy_id"] == "forbidden-output" and "internal use only" in r["message"]
               for r in outcome["reasons"])


def test_every_streamed_call_records_a_summary(guard: bastion.Guard) -> None:
    call = guard.begin_model("gpt-4o", "hi", agent_id="a")
    stopped, released = stream(call, ["Hello ", "bob@example.org", " bye"])
    assert (stopped, released) == (False, "Hello [EMAIL] bye")
    call.end(released)
    attributes = records(guard)[-1]["attributes"]
    assert attributes["stream_chunks"] == "3"
    assert attributes["stream_released_bytes"] == str(len("Hello bob@example.org bye"))
    assert int(attributes["stream_redacted_chunks"]) >= 1
    assert "error" not in attributes


def test_korean_text_is_never_split_inside_a_character(guard: bastion.Guard) -> None:
    text = "안녕하세요, 연락처는 010-1234-5678 입니다."
    raw = text.encode()
    call = guard.begin_model("gpt-4o", "hi", agent_id="a")
    # Python strings are whole characters: split the text at every character.
    stopped, released = stream(call, list(text))
    call.end(released)
    assert not stopped
    assert released == "안녕하세요, 연락처는 [PHONE] 입니다."
    assert len(raw) > len(text)


@pytest.mark.parametrize("bad", [b"bytes", 42, None])
def test_chunk_takes_text_only(guard: bastion.Guard, bad: object) -> None:
    call = guard.begin_model("gpt-4o", "hi", agent_id="a")
    with pytest.raises(TypeError, match="chunk text must be str"):
        call.chunk(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="one argument"):
        call.chunk()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="one argument"):
        call.chunk("a", "b")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="one argument"):
        call.chunk(txt="a")  # type: ignore[call-arg]
    assert call.chunk("still fine ") == (False, "still fine ")
    call.end("still fine ")


def test_a_call_awaiting_approval_may_not_stream(guard: bastion.Guard) -> None:
    call = guard.begin_tool("issue_refund", "write", agent_id="support-bot",
                            agent_role="support", resource_id="order/A-1")
    assert call.needs_approval
    with pytest.raises(bastion.StateError, match="awaiting approval"):
        call.chunk("x")
