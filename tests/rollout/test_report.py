"""`lrelease report` of real roll-outs on the sandbox, judged by the scrape gate, opened in headless
Chromium (Debian's chromium and chromium-driver, installed by scripts/bootstrap.sh): a good build
that completes and a bad one rolled back from its canary. Each page's charts render (an SVG with
drawn traces in every chart's container), with the switch, gate and rollback marks, the console
has no error, and nothing was fetched but the file itself."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from lrelease.sandbox.fleet import sandbox_gate
from tests.rollout.conftest import Project

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through chromedriver (both from Debian; nothing downloaded)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if shutil.which(p) is None]
    assert not missing, f"{missing} missing: run scripts/bootstrap.sh (Debian's chromium and chromium-driver)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,900",
                "--no-first-run", "--disable-background-networking", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def gated(fleet, tmp_path) -> Project:
    """Waves [1, 100%] judged by the scrape gate with a short bake, readings every 2 s. Five points
    of errors above the reference are tolerated, so the session's light traffic (~25 requests/s a
    node) decides a good build within seconds; a build failing half its requests still fails."""
    gate = sandbox_gate(fleet.config, "scrape")
    gate["provider"]["sample_seconds"] = 2
    gate.update(bake_seconds=6, interval_seconds=3, max_bake_seconds=40, min_requests=100, errors={"floor": 0.05})
    return Project(fleet, tmp_path, waves=[1, "100%"], gate=gate)


def rendered(browser, page: Path) -> dict:
    """Open the page, wait (at most 60 s) until its script says the charts are drawn, and read
    what the browser made of it."""
    browser.get_log("browser")  # what an earlier page logged is not this one's
    browser.get(page.as_uri())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not browser.execute_script("return document.body.dataset.charts || ''"):
        time.sleep(0.2)
    return browser.execute_script("""
        return {
          state: document.body.dataset.charts || "",
          charts: Array.from(document.querySelectorAll(".chart")).map(c => ({
            host: c.dataset.host,
            svgs: c.querySelectorAll("svg.main-svg").length,
            traces: Array.from(c.querySelectorAll(".scatterlayer .trace path.js-line"))
                      .filter(p => (p.getAttribute("d") || "").length > 10).length,
            marks: c.querySelectorAll(".shapelayer path").length,
            notes: Array.from(c.querySelectorAll(".annotation-text")).map(t => t.textContent),
          })),
          noSeries: Array.from(document.querySelectorAll(".no-series")).map(p => p.textContent),
          fetched: performance.getEntries().filter(e => e.entryType === "navigation" || e.entryType === "resource")
                     .map(e => e.name),
          share: Array.from(document.querySelectorAll(".modebar-btn")).map(b => b.dataset.title)
                   .filter(t => /share|cloud|studio/i.test(t || "")),
        };
    """) | {"console": browser.get_log("browser")}


def report(project: Project, rollout_id: str) -> Path:
    result = project.cli("report", rollout_id)
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip())


def test_the_report_of_a_good_and_of_a_rolled_back_rollout_renders_in_chromium(gated: Project, browser):
    # Given a good build rolled out in waves [1, 100%] and then a bad one (half its requests fail)
    gated.build("2.1.0", error_rate=0.005)
    good = gated.json("deploy", "--env", "production", "--build", "2.1.0", "--yes", "--reason", "<script>x</script>")
    assert good["exit_code"] == 0, (good["message"], [g["reason"] for g in good["gates"]])
    gated.build("2.2.0-bad", error_rate=0.5)
    bad = gated.json("deploy", "--env", "production", "--build", "2.2.0-bad", "--yes")
    assert bad["exit_code"] == 1 and bad["rolled_back"] == ["node1"], bad["message"]
    # And each roll-out's series were kept when its readings went
    state = gated.path.parent / "state"
    assert not list((state / "gate").glob("readings-*.json"))
    assert {p.stem for p in (state / "series").glob("*.json")} == {good["rollout_id"], bad["rollout_id"]}

    # When their reports are written and opened in headless Chromium
    pages = {name: rendered(browser, report(gated, out["rollout_id"])) for name, out in (("good", good), ("bad", bad))}

    for name, seen in pages.items():
        # Then every host has a chart, each an SVG with its error-rate and latency lines drawn
        assert seen["state"] == "rendered", (name, seen)
        assert sorted(c["host"] for c in seen["charts"]) == gated.nodes, (name, seen["noSeries"])
        for chart in seen["charts"]:
            assert chart["svgs"] >= 1 and chart["traces"] >= 2, (name, chart)
        # And the browser logged no error, fetched nothing but the page, offered no upload
        assert [e for e in seen["console"] if e["level"] in ("SEVERE", "WARNING")] == [], (name, seen["console"])
        assert seen["fetched"] and all(url.startswith(("file:", "data:")) for url in seen["fetched"]), seen["fetched"]
        assert seen["share"] == []
    # And the canary's chart is marked with its switch and its gate; the bad one's with the rollback too
    canary = {name: next(c for c in seen["charts"] if c["host"] == "node1") for name, seen in pages.items()}
    assert {"switch", "gate pass"} <= set(canary["good"]["notes"]) and "rollback" not in canary["good"]["notes"]
    assert {"switch", "gate fail", "rollback"} <= set(canary["bad"]["notes"]), canary["bad"]
    assert canary["bad"]["marks"] >= 3
