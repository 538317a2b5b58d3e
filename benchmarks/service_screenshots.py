"""The dashboard pictures of docs/service.md: a small cluster in headless Chromium, before and after a drain.

    python benchmarks/service_screenshots.py --out docs/img

Starts ``optalloc serve`` on a loopback port with a fresh state file; needs Debian's chromium and
chromium-driver and selenium.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_load import Service, free_port

TOKEN_HEADERS = {"Authorization": "Bearer bench-token-0123456789abcdef"}


def wait_settled(c: httpx.Client) -> None:
    for _ in range(200):
        if not c.get("/v1/jobs", params={"state": "pending", "limit": 1}).json()["total"]:
            time.sleep(1.5)
            return
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args(argv)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    tmp = Path(tempfile.mkdtemp())
    service = Service(tmp / "s.sqlite", free_port(), ["--budget", "1", "--tick", "0.2", "--ui-refresh", "0.5"]).start()
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,980"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=DriverService(executable_path=shutil.which("chromedriver")), options=options)
    try:
        with httpx.Client(base_url=service.url, timeout=30, headers=TOKEN_HEADERS) as c:
            for i in range(3):
                c.post(
                    "/v1/nodes",
                    json={"name": f"a100-{i}", "cpu": "64", "memory": "512Gi", "gpus": 8, "gpu_model": "A100"},
                )
            c.post("/v1/nodes", json={"name": "t4-0", "cpu": "32", "memory": "128Gi", "gpus": 4, "gpu_model": "T4"})
            jobs = [
                {
                    "name": "llm-pretrain",
                    "cpu": "16",
                    "memory": "128Gi",
                    "gpus": 4,
                    "replicas": 2,
                    "gpu_models": "A100",
                },
                {"name": "finetune", "cpu": "8", "memory": "64Gi", "gpus": 2, "gpu_models": "A100"},
                {"name": "sweep", "cpu": "4", "memory": "16Gi", "gpus": 1, "replicas": 3},
                {"name": "notebook-alice", "cpu": "2", "memory": "8Gi", "gpu_milli": 300},
                {"name": "notebook-bob", "cpu": "2", "memory": "8Gi", "gpu_milli": 500},
                {"name": "infer-small", "cpu": "2", "memory": "8Gi", "gpu_milli": 250, "gpu_models": "T4"},
                {"name": "etl-nightly", "cpu": "24", "memory": "96Gi"},
                {"name": "h100-only", "cpu": "8", "gpus": 1, "gpu_models": "H100"},
                {"name": "giant", "cpu": "8", "gpus": 8, "replicas": 3},
            ]
            c.post("/v1/jobs:batch", json={"jobs": jobs}).raise_for_status()
            wait_settled(c)
            driver.get(service.url + "/ui")
            time.sleep(1.5)
            args.out.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(args.out / "service-dashboard.png"))
            c.post("/v1/nodes/a100-1/drain").raise_for_status()
            c.delete("/v1/jobs/etl-nightly")
            wait_settled(c)
            time.sleep(2)
            driver.save_screenshot(str(args.out / "service-dashboard-after.png"))
    finally:
        driver.quit()
        service.stop()
    print(f"wrote {args.out / 'service-dashboard.png'} and {args.out / 'service-dashboard-after.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
