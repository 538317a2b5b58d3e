"""The dashboard in a real browser: Debian's headless Chromium through selenium, against a real server.

Needs ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them); skipped where they are absent.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from service_support import Server, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None, reason="Debian's chromium and chromium-driver are not installed"
)


def browser(width: int = 1400, height: int = 1000) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={width},{height}")
    return webdriver.Chrome(service=Service(executable_path=str(DRIVER)), options=options)


def seed(c: httpx.Client) -> None:
    for i in range(3):
        c.post("/v1/nodes", json={"name": f"a100-{i}", "cpu": "64", "memory": "512Gi", "gpus": 8, "gpu_model": "A100"})
    c.post("/v1/nodes", json={"name": "t4-0", "cpu": "32", "memory": "128Gi", "gpus": 4, "gpu_model": "T4"})


@pytest.mark.slow
def test_dashboard_shows_placements_and_updates_live(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server = Server(tmp_path / "s.sqlite", args=("--budget", "0.5", "--tick", "0.1", "--ui-refresh", "0.5")).start()
    driver = browser()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            seed(c)
            c.post("/v1/jobs", json={"name": "train-a", "cpu": "8", "memory": "64Gi", "gpus": 4, "gpu_models": "A100"})
            c.post("/v1/jobs", json={"name": "h100-job", "gpus": 1, "gpu_models": "H100"})
            node = wait_for(lambda: c.get("/v1/jobs/train-a").json()["placements"])[0]["node"]
            wait_for(lambda: c.get("/v1/jobs/h100-job").json()["state"] == "queued")

            driver.get(server.url + "/ui")
            assert driver.title == "optalloc"
            held = driver.find_elements(By.CSS_SELECTOR, f'[data-node="{node}"] [data-job="train-a"]')
            assert len(held) == 4  # one segment per GPU it holds
            waiting = driver.find_element(By.CSS_SELECTOR, '#queue tr[data-job="h100-job"]')
            assert "fits no node" in waiting.text
            assert driver.find_element(By.CSS_SELECTOR, '[data-stat="budget"], [data-stat="solve time / budget"]')
            driver.save_screenshot(str(tmp_path / "before.png"))

            # A change: a shared-GPU job arrives and train-a finishes; the page follows without a reload.
            c.post("/v1/jobs", json={"name": "notebook", "cpu": "1", "memory": "4Gi", "gpu_milli": 300})
            assert c.delete("/v1/jobs/train-a").status_code == 204
            wait = WebDriverWait(driver, 20, poll_frequency=0.2)
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '[data-job="notebook"].share'))
            wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, '.gpu [data-job="train-a"]'))
            share = driver.find_element(By.CSS_SELECTOR, '.gpu [data-job="notebook"]')
            assert "300 milli-GPU" in share.get_attribute("title")
            decisions = driver.find_element(By.ID, "decisions").text
            assert "notebook" in decisions and "start" in decisions
            assert "cannot reach" not in driver.find_element(By.ID, "updated").text
            driver.save_screenshot(str(tmp_path / "after.png"))
            assert (tmp_path / "after.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
            assert errors == [], errors
    finally:
        driver.quit()
        server.kill()
