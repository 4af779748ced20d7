"""The web UI (`/ui`): server-rendered pages over the same services as the management API (docs/adr/0007-web-ui.md)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from . import accounts, actions, pages, pages_admin, pages_cra, pages_fleet, pages_remote, releases_rollouts
from .web import HERE, PREFIX

__all__ = ["install"]


def install(api: FastAPI) -> None:
    """Add the UI's routes, its static files and `/` (a redirect to the overview) to the app."""
    api.state.ui_login_limits = accounts.LoginLimits()
    api.mount(PREFIX + "/static", StaticFiles(directory=HERE / "static"), name="ui-static")
    api.include_router(accounts.router)
    api.include_router(releases_rollouts.router)  # before pages: /rollouts/new is no rollout id
    api.include_router(pages.router)
    api.include_router(pages_remote.router)  # before actions: /devices/{id}/terminal is no device action
    api.include_router(actions.router)
    api.include_router(pages_fleet.router)
    api.include_router(pages_cra.router)
    api.include_router(pages_admin.router)
    api.add_api_route("/", pages.root_redirect, methods=["GET"], include_in_schema=False)
