"""``optalloc serve``: run the allocation service (needs the ``service`` extra: fastapi, uvicorn)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

log = logging.getLogger(__name__)


def serve(
    db: Annotated[Path, typer.Option("--db", help="SQLite file holding the service's state (created when missing).")],
    host: Annotated[str, typer.Option(help="Address to bind; anything but loopback needs a token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.", min=0, max=65535)] = 8080,
    token_file: Annotated[
        Path | None, typer.Option(help="File whose first line is the bearer token of every mutating route.")
    ] = None,
    token_env: Annotated[
        str | None, typer.Option(help="Environment variable holding the bearer token (instead of a file).")
    ] = None,
    method: Annotated[str, typer.Option(help="Engine of the loop's re-solves.")] = "auto",
    fallback: Annotated[str, typer.Option(help="Heuristic of admissions, and fallback of the re-solves.")] = "best-fit",
    budget: Annotated[float, typer.Option(help="Seconds one re-solve may take.", min=0.01)] = 2.0,
    workers: Annotated[int, typer.Option(help="CP-SAT workers of a re-solve.", min=1, max=256)] = 1,
    max_migrations: Annotated[int, typer.Option(help="Running jobs moved or preempted per step.", min=0)] = 2,
    min_interval: Annotated[float, typer.Option(help="Seconds between two re-solves, at least.", min=0)] = 30.0,
    tick: Annotated[
        float, typer.Option(help="Seconds between two steps of the loop when nothing happens.", min=0.01)
    ] = 1.0,
    prometheus: Annotated[
        str | None, typer.Option(help="Prometheus base URL to observe (default: observations are pushed).")
    ] = None,
    observe_interval: Annotated[float, typer.Option(help="Seconds between two Prometheus queries.", min=0.1)] = 15.0,
    sync: Annotated[
        str, typer.Option(help="SQLite synchronous mode: normal (survives kill -9) or full (a power loss too).")
    ] = "normal",
    max_body: Annotated[int, typer.Option(help="Largest request body, bytes.", min=1024)] = 1 << 20,
    max_large_body: Annotated[
        int, typer.Option(help="Largest body of solve, batch, observations and k8s requests, bytes.", min=1024)
    ] = 64 << 20,
    max_solve_time: Annotated[float, typer.Option(help="Largest time_limit of POST /v1/solve.", min=0.01)] = 60.0,
    max_concurrent_solves: Annotated[int, typer.Option(help="Stateless solves at once.", min=1)] = 2,
    ui_refresh: Annotated[float, typer.Option(help="Seconds between two refreshes of the dashboard.", min=0.2)] = 2.0,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request.")] = False,
    loop_in: Annotated[
        str,
        typer.Option(
            help="Where the loop's solves run: process (a worker process of its own) or thread (shares the GIL)."
        ),
    ] = "process",
    loop_nice: Annotated[
        int,
        typer.Option(
            help="Nice value added to the loop's worker process: requests get busy cores first.", min=0, max=19
        ),
    ] = 10,
) -> None:
    """Run the allocation service: a stateless solve, a stateful cluster kept by the adaptive loop and
    stored in SQLite (it survives restarts), a Kubernetes scheduler extender, /metrics and a dashboard
    at /ui. See docs/service.md."""
    errors = Console(stderr=True)
    try:
        import uvicorn

        from optalloc.adaptive import ControllerConfig, DriftConfig
        from optalloc.service import Settings, create_app
        from optalloc.service.auth import TokenError, check_bind, read_token
        from optalloc.service.config import LOOP_PLACES
        from optalloc.service.store import SYNC_MODES, Store, StoreError
    except ImportError as err:
        errors.print(f'error: optalloc serve needs the service extra (pip install "optalloc[service]"): {err}')
        raise typer.Exit(2) from None
    from optalloc.core import OptallocError
    from optalloc.solve import get_method

    try:
        token = read_token(file=token_file, env=token_env)
        check_bind(host, token)
        if sync not in SYNC_MODES:
            raise TokenError(f"--sync: {sync!r} is not one of {', '.join(SYNC_MODES)}")
        if loop_in not in LOOP_PLACES:
            raise TokenError(f"--loop-in: {loop_in!r} is not one of {', '.join(LOOP_PLACES)}")
        for name in dict.fromkeys((method, fallback)):
            get_method(name)
        controller = ControllerConfig.of(
            method=method,
            fallback=fallback,
            budget=budget,
            workers=workers,
            max_migrations=max_migrations,
            drift=DriftConfig(min_interval=min_interval),
        )
        Store(db, sync=sync).close()  # a file that cannot be opened fails here, in one line
    except (TokenError, StoreError, OptallocError) as err:
        errors.print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)  # one line, never wrapped
        raise typer.Exit(2) from None
    settings = Settings(
        db=db,
        token=token,
        controller=controller,
        tick=tick,
        prometheus=prometheus,
        observe_interval=observe_interval,
        max_body=max_body,
        max_large_body=max_large_body,
        max_solve_time=max_solve_time,
        max_concurrent_solves=max_concurrent_solves,
        sync=sync,
        ui_refresh=ui_refresh,
        loop_in=loop_in,
        loop_nice=loop_nice,
    )
    if loop_in == "thread":
        # The loop's engine shares the interpreter with the requests: hand the GIL back to them more often
        # than every 5 ms (Python's default) while it solves, so that a re-solve does not stretch latency.
        sys.setswitchinterval(0.001)
    app = create_app(settings)
    auth = "with a bearer token" if token else "without a token (loopback only)"
    errors.print(f"optalloc service on http://{host}:{port} {auth}; state in {db}", markup=False, highlight=False)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=access_log,
        log_level="warning" if logging.getLogger().getEffectiveLevel() >= logging.WARNING else "info",
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run()
