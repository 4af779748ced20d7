"""The web UI's release upload and rollout creation over HTTP (real server, SQLite and PostgreSQL)."""

from __future__ import annotations

import re
from collections import Counter

import httpx

from tests.conftest import RAUC_DATA
from tests.server.conftest import LiveServer
from tests.server.ui_fixtures import GOOD, csrf, device, login, release, tenant


def _releases(api: httpx.Client) -> list[int]:
    return [r["id"] for r in api.get("/api/v1/releases").json()]


def test_release_upload_from_the_ui_verifies_the_bundle_and_refuses_a_bad_one_with_its_reason(server: LiveServer) -> None:
    t = tenant(server)
    t.user("ops", "operator")
    t.user("watcher", "viewer")
    b = login(server, t, "ops")
    token = csrf(b)
    page = b.get("/ui/releases").text
    assert 'id="upload-form"' in page and "/ui/static/upload.js" in page
    assert b.get("/ui/static/upload.js").status_code == 200
    octet = {"content-type": "application/octet-stream"}
    # Without the session's CSRF token nothing is stored
    r = b.post("/ui/releases/upload", content=GOOD.read_bytes(), headers=octet)
    assert r.status_code == 403 and "CSRF" in r.text and _releases(t.api) == []
    # A bundle whose signature does not verify: refused, its reason on the page, nothing stored
    bad = (RAUC_DATA / "invalid-sig-bundle.raucb").read_bytes()
    r = b.post("/ui/releases/upload", content=bad, headers={**octet, "x-csrf-token": token})
    assert r.status_code == 422 and "signature verification failed" in r.text and 'role="alert"' in r.text
    assert _releases(t.api) == []
    # A body larger than a form (bundles are megabytes) reaches the verification, which tells what is wrong with it
    r = b.post("/ui/releases/upload", content=b"\0" * 300_000, headers={**octet, "x-csrf-token": token})
    assert r.status_code == 422 and "bundle" in r.text and _releases(t.api) == []
    r = b.post("/ui/releases/upload", content=GOOD.read_bytes(), headers={**octet, "x-csrf-token": token})
    assert r.status_code == 201, r.text
    (rid,) = _releases(t.api)
    assert r.headers["x-bulkhead-release"] == f"/ui/releases/{rid}" and "Uploaded release" in r.text
    events = t.api.get("/api/v1/audit", params={"action": "release."}).json()
    assert any(e["actor"] == "user:ops (web)" for e in events), events
    # A viewer has no upload form and may not upload
    v = login(server, t, "watcher")
    assert 'id="upload-form"' not in v.get("/ui/releases").text
    r = v.post("/ui/releases/upload", content=GOOD.read_bytes(), headers={**octet, "x-csrf-token": csrf(v)})
    assert r.status_code == 403 and _releases(t.api) == [rid]


def _sizes(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'class="preview-size">(\d+)<', html)]


def test_rollout_preview_counts_each_phase_as_the_created_rollout_holds_it(server: LiveServer) -> None:
    t = tenant(server)
    t.user("ops", "operator")
    rel = release(t)
    for i in range(5):
        device(t, f"lab-{i}", "lab")
    device(t, "line-0", "line")
    b = login(server, t, "ops")
    r = b.get("/ui/rollouts/preview", params={"groups": "lab", "phases": "20, 80"})
    assert r.status_code == 200 and "<strong>5</strong>" in r.text and _sizes(r.text) == [1, 4]
    r = b.get("/ui/rollouts/preview", params={"phases": "group:line, 100"})
    assert "<strong>6</strong>" in r.text and _sizes(r.text) == [1, 5]
    r = b.get("/ui/rollouts/preview", params={"tags": "nope", "phases": "100"})
    assert "<strong>0</strong>" in r.text and "will be refused" in r.text
    r = b.get("/ui/rollouts/preview", params={"phases": "70, 70"})
    assert r.status_code == 400 and "more than 100" in r.text
    r = b.get("/ui/rollouts/preview", params={"phases": "ten"})
    assert r.status_code == 400 and "whole percentage" in r.text
    # The preview's numbers are the created rollout's
    form = {"csrf": csrf(b), "name": "canary-first", "release_id": str(rel), "phases": "group:line, 100", "error_threshold": "50"}
    r = b.post("/ui/rollouts/new", data=form)
    assert r.status_code == 303, r.text
    rid = int(r.headers["location"].rsplit("/", 1)[1])
    out = t.api.get(f"/api/v1/rollouts/{rid}").json()
    placed = Counter(a["phase"] for a in t.api.get(f"/api/v1/rollouts/{rid}/actions").json())
    assert [placed[0], placed[1]] == [1, 5]
    assert [p["error_threshold"] for p in out["phases"]] == [50, 50]


def test_rollout_creation_form_creates_refuses_with_the_reason_and_needs_csrf(server: LiveServer) -> None:
    t = tenant(server)
    t.user("ops", "operator")
    rel = release(t)
    device(t, "lab-0", "lab")
    device(t, "lab-1", "lab")
    b = login(server, t, "ops")
    page = b.get("/ui/rollouts/new")
    assert page.status_code == 200 and f'value="{rel}"' in page.text and 'id="preview"' in page.text
    assert 'href="/ui/rollouts/new"' in b.get("/ui/rollouts").text
    form = {
        "name": "nightly",
        "release_id": str(rel),
        "groups": "lab",
        "phases": "50, 50",
        "success_threshold": "100",
        "type": "download_only",
        "window_cron": "0 2 * * *",
        "window_minutes": "120",
        "window_tz": "Europe/Berlin",
    }
    r = b.post("/ui/rollouts/new", data=form)  # no CSRF token
    assert r.status_code == 403 and t.api.get("/api/v1/rollouts").json() == []
    r = b.post("/ui/rollouts/new", data={**form, "groups": "nosuch", "csrf": csrf(b)}, headers={"hx-request": "true"})
    assert r.status_code == 400 and "nosuch do not exist" in r.text and t.api.get("/api/v1/rollouts").json() == []
    r = b.post("/ui/rollouts/new", data={**form, "csrf": csrf(b)}, headers={"hx-request": "true"})
    assert r.status_code == 204, r.text
    (out,) = t.api.get("/api/v1/rollouts").json()
    assert r.headers["hx-redirect"] == f"/ui/rollouts/{out['id']}"
    assert out["type"] == "download_only" and out["target"]["groups"] == ["lab"]
    assert out["window"] == {"cron": "0 2 * * *", "duration_minutes": 120, "timezone": "Europe/Berlin"}
    assert [p["percent"] for p in out["phases"]] == [50, 50]
    events = t.api.get("/api/v1/audit", params={"action": "rollout.create"}).json()
    assert [e["actor"] for e in events] == ["user:ops (web)"]
    # A package set instead of a release: its lines checked, then the same service
    pkgs = {**form, "name": "pkgs", "release_id": "", "type": "soft", "csrf": csrf(b)}
    for text, message in (("hello 2.0", "NAME=VERSION"), ("hello=2.0 pin", "NAME=VERSION"), ("", "exactly one of")):
        r = b.post("/ui/rollouts/new", data={**pkgs, "packages": text}, headers={"hx-request": "true"})
        assert r.status_code == 400 and message in r.text, (text, r.text)
    both = {**pkgs, "release_id": str(rel), "packages": "hello=2.0"}
    assert "exactly one of" in b.post("/ui/rollouts/new", data=both, headers={"hx-request": "true"}).text
    r = b.post("/ui/rollouts/new", data={**pkgs, "packages": "hello=2.10-3+bulkhead1 hold\nold remove\n"},
               headers={"hx-request": "true"})  # fmt: skip
    assert r.status_code == 204, r.text
    made = t.api.get("/api/v1/rollouts/pkgs").json()
    assert made["subject"] == "packages hello=2.10-3+bulkhead1 (hold), old (remove)" and made["release_id"] is None
    assert "packages hello=2.10-3+bulkhead1 (hold)" in b.get(f"/ui/rollouts/{made['id']}").text
    # A viewer gets no creation page
    t.user("watcher", "viewer")
    assert login(server, t, "watcher").get("/ui/rollouts/new").status_code == 403


def test_retry_button_gives_failed_devices_a_new_attempt(server: LiveServer) -> None:
    t = tenant(server)
    t.user("ops", "operator")
    rel = release(t)
    lab = [device(t, f"lab-{i}", "lab") for i in range(2)]
    b = login(server, t, "ops")
    r = b.post("/ui/rollouts/new", data={"csrf": csrf(b), "name": "r", "release_id": str(rel), "groups": "lab", "phases": "100"})
    assert r.status_code == 303, r.text
    rid = int(r.headers["location"].rsplit("/", 1)[1])
    assert 'id="retry"' not in b.get(f"/ui/rollouts/{rid}").text  # nothing failed yet
    offered = lab[0].release()
    assert offered is not None and offered["action"] is not None
    lab[0].report("failure", rel, reason="disk full")
    page = b.get(f"/ui/rollouts/{rid}/progress", headers={"hx-request": "true"}).text
    assert 'id="retry"' in page
    r = b.post(f"/ui/rollouts/{rid}/retry", data={"csrf": csrf(b)}, headers={"hx-request": "true"})
    assert r.status_code == 200 and 'id="retry"' not in r.text
    statuses = [a["status"] for a in t.api.get(f"/api/v1/rollouts/{rid}/actions").json() if a["device"] == "lab-0"]
    assert "scheduled" in statuses, statuses
    events = t.api.get("/api/v1/audit", params={"action": "rollout.retry"}).json()
    assert [e["actor"] for e in events] == ["user:ops (web)"]


def test_rollout_progress_over_time_from_the_api_and_as_a_plot(server: LiveServer) -> None:
    """Devices that report close their actions at once: the timeline's last point counts them, earlier points never
    count more than later ones, and the rollout page loads the plot (an htmx partial, viewers included)."""
    t = tenant(server)
    t.user("watcher", "viewer")
    rel = release(t)
    lab = [device(t, f"lab-{i}", "lab") for i in range(3)]
    body = {"name": "r", "release_id": rel, "target": {"groups": ["lab"]}, "phases": [{"percent": 100, "error_threshold": 100}]}
    rid = t.api.post("/api/v1/rollouts", json=body).json()["id"]
    lab[0].report("success", rel)
    lab[1].report("failure", rel, reason="disk full")
    r = t.api.get(f"/api/v1/rollouts/{rid}/timeline")
    assert r.status_code == 200, r.text
    tl = r.json()
    last = tl["points"][-1]
    assert (last["succeeded"], last["failed"], last["canceled"]) == (1, 1, 0)
    assert 1 <= len(tl["points"]) <= 60 and tl["step_seconds"] >= 1
    for line in ("succeeded", "failed"):
        values = [p[line] for p in tl["points"]]
        assert values == sorted(values), f"{line} never goes down"
    assert t.api.get("/api/v1/rollouts/nope/timeline").status_code == 404
    v = login(server, t, "watcher")
    assert f'hx-get="/ui/rollouts/{rid}/timeline"' in v.get(f"/ui/rollouts/{rid}").text
    plot = v.get(f"/ui/rollouts/{rid}/timeline", headers={"hx-request": "true"}).text
    assert "succeeded: <strong>1</strong>" in plot and "failed: <strong>1</strong>" in plot and "<html" not in plot
    assert v.get(f"/ui/rollouts/{2**70}/timeline").status_code == 422
