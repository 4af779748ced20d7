"""A rollout's actions as a list: keyset pages by id, each with its device's name (not its row: no inventories).

On PostgreSQL the API's page is JSON written by the database (`json_pages`), the fields of `action_json` in SQL.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, bindparam, func, literal_column, select
from sqlalchemy.orm import Session

from ..models import Action, Device
from .actions import action_json
from .json_pages import JsonList, JsonPage, iso_utc, rendered
from .keyset import Page, Paged, keyset, paged

__all__ = ["action_page", "action_page_json"]

S = TypeVar("S", bound=Select)  # type: ignore[type-arg]


def _where(q: S, rollout_id: int, status: str | None) -> S:
    """The rollout's actions (in `status`, if given) with their devices, the values as named bound parameters."""
    q = q.join(Device, Device.id == Action.device_id).where(Action.rollout_id == bindparam("f_rollout", rollout_id))
    return q.where(Action.status == bindparam("f_status", status)) if status else q


def action_page(s: Session, rollout_id: int, status: str | None, page: Page) -> Paged[dict[str, Any]]:
    """One page of the rollout's actions (in `status`, if given) by id."""
    rows = s.execute(keyset(_where(select(Action, Device.name), rollout_id, status), [Action.id], page)).all()
    return paged(rows, page, lambda row: (row[0].id,), lambda row: {**action_json(row[0]), "device": row[1]})


def _pg_fields() -> dict[str, Any]:
    """`action_json`'s fields (with the device's name) as PostgreSQL expressions: the same JSON value."""
    return {
        "id": Action.id,
        "rollout_id": Action.rollout_id,
        "device_id": Action.device_id,
        "device": Device.name,
        "release_id": Action.release_id,
        "app_id": Action.app_id,
        "phase": Action.phase,
        "type": Action.action_type,
        "status": Action.status,
        "active": Action.active,
        "bytes": func.coalesce(Action.bytes_done, literal_column("0")),
        "history": Action.history,
        "updated_at": iso_utc(Action.updated_at),
    }


_JSON = JsonList(Action.id, _pg_fields)


def action_page_json(s: Session, rollout_id: int, status: str | None, page: Page) -> JsonPage:
    """`action_page` as JSON text: written by PostgreSQL there, else from the rows."""
    if s.get_bind().dialect.name != "postgresql":
        return rendered(action_page(s, rollout_id, status, page))
    values = {"f_rollout": rollout_id} | ({"f_status": status} if status else {})
    return _JSON.page(s, "actions", lambda: _where(select(Action.id), rollout_id, status), values, page)
