"""Named read positions kept in the database (`notify_cursors`): how far a job has read a table or a log file."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .notify_models import NotifyCursor

__all__ = ["locked_cursor"]


def locked_cursor(s: Session, name: str) -> NotifyCursor:
    """The cursor `name` (made at position 0 the first time), locked for this transaction: one process at a time
    moves a cursor, so what it covers is read once."""
    c = s.get(NotifyCursor, name, with_for_update=True)
    if c is None:
        try:
            with s.begin_nested():
                s.add(NotifyCursor(name=name, position=0))
        except IntegrityError:  # another process made it first
            pass
        c = s.get(NotifyCursor, name, with_for_update=True)
        assert c is not None
    return c
