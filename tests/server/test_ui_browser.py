"""The web UI in a real browser: Debian's headless Chromium driven by selenium (chromium-driver).

Each page is saved as a screenshot under test-artifacts/ui/ (BULKHEAD_TEST_ARTIFACTS), and axe-core (npm, vendored
in tests/data/vendor) checks it for serious and critical accessibility violations.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RAUC_DATA
from tests.e2e.conftest import build_release, make_fleet, need_lab
from tests.live import live_server
from tests.server.conftest import LiveServer
from tests.server.ui_fixtures import GOOD, PASSWORD, Tenant, device, release, tenant

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402

AXE = Path(__file__).resolve().parents[1] / "data" / "vendor" / "axe.min.js"
SHOTS = Path(os.environ.get("BULKHEAD_TEST_ARTIFACTS", "test-artifacts")) / "ui"


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("ui-browser")) as srv:
        yield srv


@pytest.fixture(scope="module")
def chrome() -> Iterator[WebDriver]:
    binary = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip("Chromium is missing: install the Debian packages chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900", "--disable-gpu"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def wait(check: Callable[[], Any], what: str, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)


def sign_in(driver: WebDriver, server: LiveServer, t: Tenant, user: str) -> None:
    driver.delete_all_cookies()
    driver.get(server.url + "/ui/login")
    driver.find_element(By.ID, "tenant").send_keys(t.name)
    driver.find_element(By.ID, "user").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit].primary").click()
    wait(lambda: driver.current_url.rstrip("/").endswith("/ui"), "the overview after signing in")


def shot(driver: WebDriver, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def axe_violations(driver: WebDriver) -> list[str]:
    """Serious and critical axe-core violations on the current page."""
    driver.execute_script(AXE.read_text())
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(r => done(JSON.stringify(r.violations)), e => done(String(e)));"
    )
    violations = json.loads(result)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in violations
        if v["impact"] in ("serious", "critical")
    ]


def texts(driver: WebDriver, css: str) -> list[str]:
    """The text of every element `css` selects, read in one script (htmx may swap the elements between two calls)."""
    found = driver.execute_script("return [...document.querySelectorAll(arguments[0])].map(e => e.textContent.trim());", css)
    return [str(t) for t in found]


def mark(driver: WebDriver) -> None:
    """A marker that only lives as long as this document: its presence later proves there was no reload."""
    driver.execute_script("window.__bulkhead_marker = 42;")


def not_reloaded(driver: WebDriver) -> bool:
    return bool(driver.execute_script("return window.__bulkhead_marker === 42;"))


def no_alert(driver: WebDriver) -> bool:
    try:
        alert = driver.switch_to.alert
    except NoAlertPresentException:
        return True
    return alert is None


@pytest.fixture(scope="module")
def fleet(ui_server: LiveServer) -> dict[str, Any]:
    """A tenant with users of each role, a release, devices (one of them hostile) and a running rollout."""
    t = tenant(ui_server)
    t.user("ops", "operator")
    t.user("watcher", "viewer")
    rel = release(t)
    lab = [device(t, f"lab-{i}", "lab") for i in range(2)]
    device(t, "line-0", "line")
    evil = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    boot = t.api.post("/api/v1/bootstrap-tokens", json={"name": "evil"}).json()["token"]
    r = t.api.post(
        "/device/v1/enroll",
        json={"bootstrap_token": boot, "name": "evil-1", "compatible": "Test Config", "attributes": {"location": evil}},
    )
    r.raise_for_status()
    headers = {"authorization": f"Bearer {r.json()['credential']}"}
    inventory = {"os_version": evil, "packages": {"format": "dpkg", "count": 2, "packages": {evil: "1.0", "bash": "5.2"}}}
    t.api.post("/device/v1/reports", json={"events": [], "inventory": inventory}, headers=headers).raise_for_status()
    r = t.api.post(
        "/api/v1/rollouts",
        json={
            "name": "lab-rollout",
            "release_id": rel,
            "target": {"groups": ["lab"]},
            "phases": [{"percent": 50}, {"percent": 50}],
        },
    )
    assert r.status_code == 201, r.text
    ids = {d["name"]: d["id"] for d in t.api.get("/api/v1/devices").json()}
    return {"t": t, "rel": rel, "lab": lab, "rollout": r.json()["id"], "ids": ids, "evil": evil}


def test_sign_in_overview_and_every_page_renders_accessibly(
    ui_server: LiveServer, chrome: WebDriver, fleet: dict[str, Any]
) -> None:
    chrome.delete_all_cookies()
    chrome.get(ui_server.url + "/")
    wait(lambda: "/ui/login" in chrome.current_url, "the login page for a visitor")
    shot(chrome, "login")
    problems = {"login": axe_violations(chrome)}
    sign_in(chrome, ui_server, fleet["t"], "admin")
    assert "Fleet overview" in chrome.page_source and "lab-rollout" in chrome.page_source
    tiles = chrome.find_element(By.CSS_SELECTOR, ".tiles").text
    assert "4 devices" in tiles.replace("\n", " ")
    case_body = {"kind": "vulnerability", "title": "libssl exploited", "cves": ["CVE-2024-3094"]}
    case = fleet["t"].api.post("/api/v1/cra/cases", json=case_body).json()["id"]
    wait(lambda: "Open CRA cases" in chrome.page_source, "the overview's exposure and CRA partial")
    assert chrome.find_elements(By.CSS_SELECTOR, "svg.chart"), "the version chart is drawn"
    pages = {
        "overview": "/ui/",
        "devices": "/ui/devices",
        "device": f"/ui/devices/{fleet['ids']['lab-0']}",
        "releases": "/ui/releases",
        "release": f"/ui/releases/{fleet['rel']}",
        "rollouts": "/ui/rollouts",
        "rollout": f"/ui/rollouts/{fleet['rollout']}",
        "rollout-new": "/ui/rollouts/new",
        "account": "/ui/account",
        "users": "/ui/users",
        "audit": "/ui/audit",
        "apps": "/ui/apps",
        "groups": "/ui/groups",
        "group": "/ui/groups/lab",
        "vulns": "/ui/vulns",
        "cra-cases": "/ui/cra/cases",
        "cra-case": f"/ui/cra/cases/{case}",
        "advisories": "/ui/cra/advisories",
        "tokens": "/ui/tokens",
        "keyring": "/ui/keyring",
    }
    for name, path in pages.items():
        chrome.get(ui_server.url + path)
        assert "Error" not in chrome.title, (name, chrome.page_source[:500])
        shot(chrome, name)
        problems[name] = axe_violations(chrome)
    assert not any(problems.values()), problems


def test_device_list_filter_updates_the_rows_without_a_reload(
    ui_server: LiveServer, chrome: WebDriver, fleet: dict[str, Any]
) -> None:
    sign_in(chrome, ui_server, fleet["t"], "ops")
    chrome.get(ui_server.url + "/ui/devices")

    def rows() -> list[str]:
        return texts(chrome, "#device-rows tbody td:first-child a")

    assert sorted(rows()) == ["evil-1", "lab-0", "lab-1", "line-0"]
    mark(chrome)
    chrome.find_element(By.ID, "f-name").send_keys("lab-")
    wait(lambda: sorted(rows()) == ["lab-0", "lab-1"], "the filtered rows")
    assert not_reloaded(chrome) and "name=lab-" in chrome.current_url  # the filter is in the address for sharing
    shot(chrome, "devices-filtered")
    chrome.find_element(By.ID, "f-name").clear()
    chrome.find_element(By.ID, "f-group").send_keys("line")
    wait(lambda: rows() == ["line-0"], "the rows of group line")


def test_hostile_device_data_renders_as_text(ui_server: LiveServer, chrome: WebDriver, fleet: dict[str, Any]) -> None:
    sign_in(chrome, ui_server, fleet["t"], "admin")
    for path in ["/ui/devices", f"/ui/devices/{fleet['ids']['evil-1']}", "/ui/"]:
        chrome.get(ui_server.url + path)
        time.sleep(0.3)
        assert no_alert(chrome), path
        scripts = chrome.find_elements(By.TAG_NAME, "script")
        assert [s.get_attribute("src") for s in scripts] == [ui_server.url + "/ui/static/vendor/htmx.min.js"], path
        assert not chrome.find_elements(By.CSS_SELECTOR, "img"), path
    # the overview's version chart (its bars' titles) and its table (folded under the chart) hold the text as text
    assert fleet["evil"] in chrome.find_element(By.TAG_NAME, "main").get_attribute("textContent")
    chrome.get(ui_server.url + f"/ui/devices/{fleet['ids']['evil-1']}")
    assert fleet["evil"] in chrome.find_element(By.TAG_NAME, "main").text
    search = chrome.find_element(By.ID, "pkg-q")
    search.send_keys("script")
    wait(lambda: "1 package matching" in "".join(texts(chrome, "#packages p")), "the package search")
    assert no_alert(chrome)
    shot(chrome, "device-hostile")


def test_pause_resume_and_live_progress_without_a_reload(ui_server: LiveServer, chrome: WebDriver, fleet: dict[str, Any]) -> None:
    t, rid, rel = fleet["t"], fleet["rollout"], fleet["rel"]
    sign_in(chrome, ui_server, t, "ops")
    chrome.get(ui_server.url + f"/ui/rollouts/{rid}")
    mark(chrome)

    def status() -> str:
        return "".join(texts(chrome, "#rollout-status"))

    assert status() == "running"
    chrome.find_element(By.ID, "pause").click()
    wait(lambda: status() == "paused", "the paused status")
    assert t.api.get(f"/api/v1/rollouts/{rid}").json()["status"] == "paused"
    shot(chrome, "rollout-paused")
    chrome.find_element(By.ID, "resume").click()
    wait(lambda: status() == "running", "the running status")
    assert t.api.get(f"/api/v1/rollouts/{rid}").json()["status"] == "running"
    # The devices update; the page follows by polling its progress partial (every 2 s), not by a reload.
    updated: set[str] = set()

    def update_offered() -> bool:
        for d in fleet["lab"]:
            offered = d.release()
            if d.name not in updated and offered is not None and offered["action"] is not None:
                for phase in ("downloading", "installing", "success"):
                    d.report(phase, rel)
                updated.add(d.name)
        return len(updated) == 2

    wait(update_offered, "both phases to offer the update", 30)
    wait(lambda: texts(chrome, "#rollout-done") == ["2"], "both devices to show as succeeded", 15)
    wait(lambda: status() == "finished", "the finished status", 15)
    # Per device too: the devices table is part of the polled partial
    wait(lambda: texts(chrome, "#progress tbody td .badge") == ["success", "success"], "each device's success")
    assert not_reloaded(chrome)
    shot(chrome, "rollout-finished")
    events = t.api.get("/api/v1/audit", params={"action": "rollout."}).json()
    assert {("rollout.pause", "user:ops (web)"), ("rollout.resume", "user:ops (web)")} <= {
        (e["action"], e["actor"]) for e in events
    }


def test_a_viewer_sees_no_write_controls(ui_server: LiveServer, chrome: WebDriver, fleet: dict[str, Any]) -> None:
    sign_in(chrome, ui_server, fleet["t"], "watcher")
    for path in [f"/ui/devices/{fleet['ids']['lab-0']}", f"/ui/rollouts/{fleet['rollout']}", "/ui/devices", "/ui/"]:
        chrome.get(ui_server.url + path)
        assert not chrome.find_elements(By.CSS_SELECTOR, "[hx-post]"), path
        forms = [f.get_attribute("action") for f in chrome.find_elements(By.CSS_SELECTOR, "form[method=post]")]
        assert all(a and a.endswith("/ui/logout") for a in forms), (path, forms)
    assert "Users" not in chrome.find_element(By.TAG_NAME, "nav").text
    shot(chrome, "viewer-device")


def test_device_status_updates_without_a_reload(ui_server: LiveServer, chrome: WebDriver, fleet: dict[str, Any]) -> None:
    t = fleet["t"]
    sign_in(chrome, ui_server, t, "watcher")
    chrome.get(ui_server.url + f"/ui/devices/{fleet['ids']['line-0']}")
    mark(chrome)
    assert texts(chrome, "#device-status") == ["active"]
    t.api.post("/api/v1/devices/line-0/disable").raise_for_status()
    try:
        wait(lambda: texts(chrome, "#device-status") == ["disabled"], "the disabled status within 2 s and a bit", 4)
        assert not_reloaded(chrome)
    finally:
        t.api.post("/api/v1/devices/line-0/enable").raise_for_status()


def test_upload_a_release_then_create_a_two_phase_rollout_and_watch_it_succeed(ui_server: LiveServer, chrome: WebDriver) -> None:
    """The operator's path in the browser: upload (a refused bundle shows why), create with the live preview, watch.

    The devices are simulated: a background thread polls the real device API and reports each step of the update,
    as an agent does (test_e2e's agents with RAUC take minutes; this test stays in seconds)."""
    t = tenant(ui_server)
    t.user("ops", "operator")
    units = [device(t, f"unit-{i}", "units") for i in range(2)]
    device(t, "bystander", "other")
    sign_in(chrome, ui_server, t, "ops")
    chrome.get(ui_server.url + "/ui/releases")

    def result() -> str:
        return "".join(texts(chrome, "#upload-result"))

    chrome.find_element(By.ID, "bundle").send_keys(str(RAUC_DATA / "invalid-sig-bundle.raucb"))
    chrome.find_element(By.ID, "upload-button").click()
    wait(lambda: "signature verification failed" in result(), "the refused bundle's reason", 20)
    assert result().startswith("bundle rejected") and "Back to the overview" not in result()  # the reason alone
    assert texts(chrome, "#upload-percent") == ["refused"]
    shot(chrome, "release-upload-refused")
    assert t.api.get("/api/v1/releases").json() == []
    chrome.find_element(By.ID, "bundle").send_keys(str(GOOD))
    chrome.find_element(By.ID, "upload-button").click()
    wait(lambda: "Uploaded release" in result(), "the uploaded release", 20)
    assert chrome.find_element(By.ID, "upload-progress").get_attribute("value") == "100"
    shot(chrome, "release-uploaded")
    (rel,) = [r["id"] for r in t.api.get("/api/v1/releases").json()]
    chrome.find_element(By.ID, "uploaded-release").click()
    wait(lambda: chrome.current_url.endswith(f"/ui/releases/{rel}"), "the release page")

    chrome.get(ui_server.url + "/ui/rollouts")
    chrome.find_element(By.ID, "new-rollout").click()
    wait(lambda: chrome.current_url.endswith("/ui/rollouts/new"), "the creation page")
    wait(lambda: texts(chrome, "#preview .preview-size") == ["1", "2"], "the preview of the default phases, every device")
    create_two_phase_rollout(chrome, "units-two-phases", "units", shoot="rollout-new")

    stop = threading.Event()

    def agents() -> None:
        done: set[str] = set()
        while not stop.is_set() and len(done) < len(units):
            for d in units:
                offered = d.release()
                if d.name not in done and offered is not None and offered["action"] is not None:
                    for phase in ("downloading", "installing", "success"):
                        d.report(phase, rel)
                    done.add(d.name)
            stop.wait(0.3)

    worker = threading.Thread(target=agents, daemon=True)
    worker.start()
    try:
        wait(lambda: texts(chrome, "#rollout-status") == ["finished"], "the finished rollout without a reload", 45)
    finally:
        stop.set()
        worker.join(10)
    assert texts(chrome, "#rollout-done") == ["2"] and not_reloaded(chrome)
    assert texts(chrome, "#progress tbody td .badge") == ["success", "success"]
    shot(chrome, "rollout-created-finished")
    assert problems_free(chrome)


def test_lab_devices_with_rauc_update_through_a_rollout_made_in_the_browser(
    ui_server: LiveServer, chrome: WebDriver, tmp_path: Path
) -> None:
    """Two lab devices (each with its own RAUC D-Bus service and the real agent: tests/e2e) install a release through
    a two-phase rollout created in the browser; the page follows them to the end without a reload, and the progress
    plot counts both."""
    need_lab()
    f = make_fleet(ui_server, tmp_path)
    try:
        with f.api() as c:
            name = c.get("/api/v1/tenant").json()["name"]
            c.put("/api/v1/users/admin/password", json={"password": PASSWORD}).raise_for_status()
        f.upload(build_release(f.work, "2.0", f.pki))
        units = [f.device(f"rauc-{i}", group="units", initial_version="1.0") for i in range(2)]
        f.wait(lambda: all(f.show(d.spec.name)["last_seen"] for d in units), 60, "enrollment")
        sign_in(chrome, ui_server, Tenant(name, f.api()), "admin")
        chrome.get(ui_server.url + "/ui/rollouts/new")
        create_two_phase_rollout(chrome, "rauc-units", "units")
        f.wait(lambda: texts(chrome, "#rollout-status") == ["finished"], 300, "the rollout to finish, seen in the browser")
        assert texts(chrome, "#rollout-done") == ["2"] and not_reloaded(chrome)
        assert [d.booted for d in units] == ["B", "B"], "each device booted the new slot"
        assert {f.show(d.spec.name)["reported"].get("os_version") for d in units} == {"2.0"}
        wait(lambda: "succeeded: 2" in " ".join(texts(chrome, "#timeline .legend")), "the plot to count both", 15)
        shot(chrome, "rollout-lab-devices-finished")
        chrome.execute_script("document.getElementById('timeline').scrollIntoView()")
        shot(chrome, "rollout-lab-devices-plot")
        assert problems_free(chrome)
    finally:
        f.shutdown()


def create_two_phase_rollout(driver: WebDriver, name: str, group: str, shoot: str | None = None) -> None:
    """On the creation page: a rollout of the release offered to `group`'s two devices in phases of 50 %, one
    device each in the live preview; then its page, marked (to prove later there was no reload)."""
    driver.find_element(By.ID, "n-name").send_keys(name)
    driver.find_element(By.ID, "n-groups").send_keys(group)
    phases = driver.find_element(By.ID, "n-phases")
    phases.clear()
    phases.send_keys("50, 50")
    wait(lambda: texts(driver, "#preview .preview-size") == ["1", "1"], "the live preview of the two phases")
    assert "2" in "".join(texts(driver, "#preview-total"))
    if shoot:
        shot(driver, shoot)
    driver.find_element(By.ID, "create").click()
    wait(lambda: re.search(r"/ui/rollouts/\d+$", driver.current_url), "the new rollout's page")
    mark(driver)


def problems_free(driver: WebDriver) -> bool:
    problems = axe_violations(driver)
    assert not problems, problems
    return True


def test_a_terminal_on_a_device_in_the_browser(ui_server: LiveServer, chrome: WebDriver, tmp_path: Path) -> None:
    """The device page's terminal: xterm.js (vendored) on the session's WebSocket, authenticated by the UI session's
    cookie; the real agent's shell answers what is typed, and the device's health plot is on its page."""
    from tests.agent.fakes import lab_agent

    t = tenant(ui_server)
    t.api.put("/api/v1/remote-access", json={"enabled": True}).raise_for_status()
    boot = t.api.post("/api/v1/bootstrap-tokens", json={"name": "term"}).json()["token"]
    agent = lab_agent(ui_server.url, tmp_path / "agent", "term-dev", boot)
    agent.run_once()
    agent.metrics.sample()
    agent.flush()
    dev_id = t.api.get("/api/v1/devices/term-dev").json()["id"]
    stop = threading.Event()
    loop = threading.Thread(target=lambda: [agent.run_once() for _ in iter(lambda: stop.wait(0.5), True)], daemon=True)
    loop.start()
    try:
        wait(lambda: agent.tunnel._ws is not None, "the agent's control channel")
        sign_in(chrome, ui_server, t, "admin")
        chrome.get(f"{ui_server.url}/ui/devices/{dev_id}")
        wait(lambda: chrome.find_elements(By.CSS_SELECTOR, "#health svg.chart"), "the health plot")
        assert "memory %" in " ".join(texts(chrome, "#health .legend"))
        chrome.find_element(By.XPATH, "//button[text()='Open a terminal']").click()
        wait(
            lambda: "Connected." in " ".join(texts(chrome, "#terminal-status")),
            f"the terminal to join: {texts(chrome, 'main')}",
            30,
        )
        chrome.find_element(By.CSS_SELECTOR, "#terminal textarea").send_keys("echo web-$((6*7))\n")
        wait(lambda: "web-42" in " ".join(texts(chrome, "#terminal .xterm-rows")), "the shell's answer in the terminal", 20)
        shot(chrome, "terminal")
        chrome.find_element(By.CSS_SELECTOR, "#terminal textarea").send_keys("exit 4\n")
        wait(lambda: "exited with status 4" in texts(chrome, "#terminal-status")[0], "the shell's exit", 20)
        (session, *_) = t.api.get("/api/v1/devices/term-dev/sessions").json()
        assert session["opened_by"].startswith("user:admin") and session["close_reason"] == "the shell exited with status 4"
    finally:
        stop.set()
        loop.join(10)
        agent.tunnel.stop()


def test_a_page_of_another_site_cannot_use_the_session_cookie_for_a_terminal(ui_server: LiveServer) -> None:
    """Browsers send the cookie with a WebSocket any site opens: the server refuses one whose Origin is not its own."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    from tests.server.ui_fixtures import browser

    t = tenant(ui_server)
    t.api.put("/api/v1/remote-access", json={"enabled": True}).raise_for_status()
    with browser(ui_server) as b:
        page = b.get("/ui/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        form = {"tenant": t.name, "user": "admin", "password": PASSWORD, **({"csrf": token.group(1)} if token else {})}
        signed = b.post("/ui/login", data=form)
        cookie = signed.cookies.get("bulkhead_session") or b.cookies.get("bulkhead_session")
    assert cookie
    url = "ws" + ui_server.url.removeprefix("http") + "/api/v1/sessions/1/connect"
    for origin in ("https://evil.example", ui_server.url.replace("http:", "https:"), ui_server.url + "0"):
        with pytest.raises(InvalidStatus) as refused:  # refused on the upgrade: another host, scheme or port
            connect(url, additional_headers={"cookie": f"bulkhead_session={cookie}", "origin": origin})
        assert refused.value.response.status_code == 403
    with connect(url, additional_headers={"cookie": f"bulkhead_session={cookie}", "origin": ui_server.url}) as ws:
        assert "does not exist" in json.loads(ws.recv(timeout=10))["error"]  # the cookie counts from this server's pages
