"""Remote sessions' shared statuses and control messages (protocol/tunnel.py)."""

from __future__ import annotations

from bulkhead.protocol.tunnel import SESSION_TRANSITIONS, SessionStatus, control, parse_control, session_may


def test_a_session_only_closes_and_stays_closed() -> None:
    assert session_may("open", "closed")
    assert not session_may("closed", "open") and not session_may("closed", "closed")
    assert set(SESSION_TRANSITIONS) == set(SessionStatus)


def test_control_messages_round_trip_and_anything_else_is_ignored() -> None:
    assert parse_control(control(resize=[80, 24])) == {"resize": [80, 24]}
    assert parse_control(control(exit=130)) == {"exit": 130}
    for junk in ("", "not json", "[1, 2]", '"text"', "{"):
        assert parse_control(junk) == {}
