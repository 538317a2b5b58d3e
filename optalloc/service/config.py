"""The service's settings: one frozen object built by ``optalloc serve`` (or a test) and nothing else.

Nothing here reads the environment or a file: the command line reads the token and passes it in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from optalloc.adaptive import ControllerConfig, DriftConfig
from optalloc.core.limits import LIMITS

#: Where the loop's engine may run (``Settings.loop_in``).
LOOP_PLACES = ("process", "thread")


def default_controller() -> ControllerConfig:
    """The loop's defaults in a service: ``auto`` within 2 s on one CP-SAT worker (the other core serves
    requests), admissions by best-fit between re-solves, re-solves on drift and events at most every 30 s."""
    return ControllerConfig.of(method="auto", budget=2.0, workers=1, drift=DriftConfig(min_interval=30.0))


@dataclass(frozen=True)
class Settings:
    """How one service runs.

    ``db``: the SQLite file. ``token``: the bearer token of mutating routes (None: no token; only a
    loopback bind is then allowed by ``serve``). ``controller``: the adaptive loop's configuration.
    ``tick``: seconds between two steps of the loop when nothing happens; ``batch_window``: after an
    event, seconds the loop waits for more before it steps (events arriving together are one step).
    ``prometheus``: base URL of a Prometheus server to observe (None: observations are pushed to
    ``POST /v1/observations``); ``observe_interval``: seconds between two Prometheus queries;
    ``observation_max_age``: a pushed observation older than this is stale. ``max_body`` /
    ``max_large_body``: request size limits in bytes (the large one for solve, batch submits,
    observations and the Kubernetes extender). ``max_solve_time``: the largest ``time_limit`` of a
    stateless solve; ``max_concurrent_solves``: stateless solves running at once (more get 429).
    ``max_nodes`` / ``max_jobs``: of the stateful cluster (default: the core's limits,
    :data:`optalloc.core.LIMITS`; a problem beyond those is refused by the core anyway). ``sync``: SQLite's ``normal`` (survives a
    crash of the process) or ``full`` (survives a power loss too). ``plan_history``: plans kept for
    ``GET /v1/plan?since=``. ``ui_refresh``: seconds between two refreshes of the dashboard.
    """

    db: Path
    token: str | None = None
    controller: ControllerConfig = field(default_factory=default_controller)
    tick: float = 1.0
    batch_window: float = 0.25
    prometheus: str | None = None
    observe_interval: float = 15.0
    observation_max_age: float = 120.0
    max_body: int = 1 << 20
    max_large_body: int = 64 << 20
    max_solve_time: float = 60.0
    max_concurrent_solves: int = 2
    max_nodes: int = LIMITS.nodes
    max_jobs: int = LIMITS.jobs
    sync: str = "normal"
    plan_history: int = 32
    ui_refresh: float = 2.0
    loop_in: str = "process"
    loop_nice: int = 10

    def __post_init__(self) -> None:
        if self.loop_in not in LOOP_PLACES:
            raise ValueError(f"loop_in: {self.loop_in!r} is not one of {', '.join(LOOP_PLACES)}")
        if not 0 <= self.loop_nice <= 19:
            raise ValueError(f"loop_nice: {self.loop_nice} is not within 0-19")
