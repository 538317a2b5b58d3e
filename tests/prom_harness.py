"""Test helpers: a real Prometheus on loopback scraping a DCGM-named exporter, and misbehaving servers.

Everything binds 127.0.0.1 on a free port and is stopped by ``close()`` (the fixtures call it).
"""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROMETHEUS = shutil.which("prometheus")
DCGM_LABELS = ("gpu", "UUID", "device", "modelName", "Hostname", "container", "namespace", "pod")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DcgmExporter:
    """A prometheus-client endpoint serving gauges named and labelled as NVIDIA's dcgm-exporter does."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Gauge, start_http_server

        self.registry = CollectorRegistry()
        self.util = Gauge("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", DCGM_LABELS, registry=self.registry)
        self.fb_used = Gauge(
            "DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", DCGM_LABELS, registry=self.registry
        )
        self.server, self.thread = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.port = int(self.server.server_port)

    def set_gpu(
        self, host: str, gpu: int, util: float, fb_used: float, pod: str = "", namespace: str = "default"
    ) -> None:
        """One GPU's utilisation (percent) and framebuffer used (MiB), attributed to ``pod`` if given."""
        labels = {
            "gpu": str(gpu),
            "UUID": f"GPU-{host}-{gpu}",
            "device": f"nvidia{gpu}",
            "modelName": "NVIDIA A100-SXM4-40GB",
            "Hostname": host,
            "container": "main" if pod else "",
            "namespace": namespace if pod else "",
            "pod": pod,
        }
        self.util.labels(**labels).set(util)
        self.fb_used.labels(**labels).set(fb_used)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class PrometheusServer:
    """``prometheus`` started on 127.0.0.1 with a temp TSDB, scraping ``targets`` every second."""

    def __init__(self, targets: list[str], *, startup_timeout: float = 20.0) -> None:
        if PROMETHEUS is None:
            raise RuntimeError("prometheus is not on PATH")
        self.dir = Path(tempfile.mkdtemp(prefix="optalloc-prom-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = self.dir / "prometheus.yml"
        quoted = ", ".join(f"'{t}'" for t in targets)
        config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            "  - job_name: dcgm\n"
            "    honor_labels: true\n"
            f"    static_configs:\n      - targets: [{quoted}]\n"
        )
        self.config = config
        self.log = open(self.dir / "prometheus.log", "ab")  # noqa: SIM115 (closed in close())
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        """(Re)start the process on the same port and storage; returns once it answers /-/ready."""
        if self.running:
            return
        self.process = subprocess.Popen(
            [
                str(PROMETHEUS),
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_ready(self.startup_timeout)
        except BaseException:
            self.close()
            raise

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                code = self.process.returncode if self.process is not None else None
                raise RuntimeError(f"prometheus exited with {code}: {self.log_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"prometheus not ready within {timeout}s: {self.log_text()}")

    def wait_for(self, promql: str, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Poll an instant query until it returns a series (the first scrape has landed)."""
        deadline = time.monotonic() + timeout
        query = urllib.parse.urlencode({"query": promql})
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/api/v1/query?{query}", timeout=2) as r:
                    result: list[dict[str, Any]] = json.loads(r.read())["data"]["result"]
                if result:
                    return result
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"no sample of {promql!r} within {timeout}s: {self.log_text()}")

    def log_text(self) -> str:
        self.log.flush()
        return (self.dir / "prometheus.log").read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        """Stop the process (the server is then down; the temp files remain until close())."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        if not self.log.closed:
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class CannedServer:
    """A tiny HTTP server on 127.0.0.1 answering every GET with ``body`` and ``status`` after ``delay``
    seconds: a slow Prometheus, or one answering garbage. ``body`` may be a function of the query
    parameters (a fake Prometheus answering per PromQL expression)."""

    def __init__(
        self, body: bytes | Callable[[dict[str, str]], bytes], *, status: int = 200, delay: float = 0.0
    ) -> None:
        canned = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                canned.requests += 1
                if canned.delay:
                    canned.release.wait(canned.delay)
                params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                canned.queries.append(params.get("query", ""))
                body = canned.body(params) if callable(canned.body) else canned.body
                try:
                    self.send_response(canned.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client gave up (timeout): nothing to answer
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.body, self.status, self.delay, self.requests = body, status, delay, 0
        self.queries: list[str] = []
        self.release = threading.Event()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def api_answer(result: list[dict[str, Any]], kind: str = "vector") -> bytes:
    """A well-formed Prometheus API v1 answer."""
    return json.dumps({"status": "success", "data": {"resultType": kind, "result": result}}).encode()
