"""The ``direct`` engine of the simulator: heuristic policies without rebuilding the world at each event.

The controller step rebuilds a :class:`~optalloc.core.Problem` of the whole window, a fresh
:class:`~optalloc.heuristics.Placer` and a verification at every step: right for production, where a
step runs every few seconds, but it costs milliseconds per event, which caps a replay at a few hundred
to a few thousand events per second. For a heuristic policy (``method == fallback`` = a placement rule,
no migration) every step of the controller comes down to: apply the events, then place the waiting jobs
in queue order with the rule, skip-and-continue, around the running jobs. This engine does exactly that
on one persistent placer:

- the queue is kept sorted by the policy's order, computed once over the whole scenario (the same keys
  and tie-breaks as ``optalloc.heuristics.order`` gives the controller's window);
- a job class (equal :attr:`~optalloc.core.Job.demand_key`) that did not fit is not tried again until
  a node that got capacity back since (a completion, a preemption, a repair) could host one of its
  replicas: otherwise the cluster only got fuller where it matters, so it would not fit now either;
  the waiting jobs of each class are merged by rank, so a pass costs a few attempts per class;
- the FGD rule scores against the target workload of the whole scenario (the FGD paper's setting);
  the controller scores against the jobs of its window, so ``fgd`` decisions can differ between engines.

Without node failures, first-fit, best-fit and the other deterministic rules give the same decisions as
the controller step (tests/test_sim_simulator.py pins it). The engine takes no observations: heuristics
do not act on drift.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Sequence
from typing import Any

import numpy as np

from optalloc.adaptive.plan import Action, ActionKind, Event, EventKind, Plan
from optalloc.core import Allocation, Placement, Problem, ProblemError, Status, verify
from optalloc.sim.policies import Policy
from optalloc.sim.workloads import Scenario


class DirectEngine:
    """Heuristic policy ``policy`` on ``scenario``: ``step(t, events) -> Plan`` (actions only)."""

    def __init__(self, scenario: Scenario, policy: Policy) -> None:
        from optalloc import heuristics

        cfg = policy.config
        if cfg.allow_migration or cfg.method != cfg.fallback or cfg.method not in heuristics.RULES:
            raise ProblemError(
                "engine", "direct", f"is for heuristic policies (a placement rule, no migration), not {policy.name!r}"
            )
        if cfg.options.order == "round-robin":
            raise ProblemError(
                "engine", "direct", "keeps one queue order for the whole run: round-robin needs the controller engine"
            )
        if cfg.horizon is not None or cfg.right_size is not None:
            raise ProblemError("engine", "direct", f"does not run the horizon model or right-sizing ({policy.name!r})")
        self.scenario = scenario
        self.problem = scenario.problem
        self.placer = heuristics.Placer(self.problem, cfg.method, seed=cfg.options.seed)
        ranks = heuristics.order(self.problem, cfg.options.order)
        self.rank = np.empty(len(ranks), dtype=np.int64)
        self.rank[ranks] = np.arange(len(ranks))
        self.max_window = cfg.max_window
        self.running: dict[int, tuple[Placement, ...]] = {}
        # Job classes (equal demand_key): the waiting jobs of each, sorted by rank, and what it needs.
        ids: dict[Any, int] = {}
        self.cls = np.array([ids.setdefault(job.demand_key, len(ids)) for job in scenario.jobs], dtype=np.int64)
        first = {int(c): j for j, c in reversed(list(enumerate(self.cls.tolist())))}
        self.waiting: list[list[tuple[int, int]]] = [[] for _ in ids]  # class -> [(rank, job)], sorted
        self.demand = [self._demand(first[c]) for c in range(len(ids))]
        self.count = 0  # waiting jobs
        self.nonempty: set[int] = set()  # classes with waiting jobs
        # Capacity grows only through releases: the log of nodes that got room back, and per class the
        # log length when it last did not fit (it can fit again only on a node logged since).
        self.log: list[int] = []
        self.failed: dict[int, int] = {}
        self.blocked: dict[int, tuple[Any, ...]] = {}  # node index -> its free state before it was lost
        self.node_index = self.problem.node_index
        self.job_index = scenario.job_index
        self.resolves = 0
        self._nothing = Allocation(status=Status.FEASIBLE)
        self._empty = Plan(0.0, self._nothing)

    def _demand(self, j: int) -> tuple[np.ndarray, int, int, int, int, int]:
        """What one replica of job ``j``'s class needs: allowed nodes, cpu, memory, milli per GPU, GPUs,
        GPU memory."""
        job = self.scenario.jobs[j]
        return (self.problem.allowed_nodes(j), job.cpu, job.memory, job.per_gpu_milli, job.gpus_used, job.gpu_memory)

    # The step -------------------------------------------------------------------------------
    def step(self, now: float, events: Sequence[Event]) -> Plan:
        actions: list[Action] = []
        for event in events:
            kind = event.kind
            if kind is EventKind.ARRIVAL and event.job is not None:
                self._enqueue(self.job_index[event.job.name])
            elif kind is EventKind.COMPLETION:
                j = self.job_index[event.name]
                if j in self.running:
                    self._release(self.running.pop(j))
                else:
                    self._dequeue(j)
            elif kind is EventKind.NODE_LOST:
                actions += self._lose(self.node_index[event.name])
            elif kind is EventKind.NODE_ADDED and event.node is not None:
                self._restore(self.node_index[event.node.name])
        if events:
            actions += self._admit()
        if not actions:
            return self._empty
        return Plan(now, self._nothing, tuple(actions), method=self.placer.rule.name)

    def _admit(self) -> list[Action]:
        """Place the waiting jobs in queue order, skip-and-continue.

        A class that did not fit is skipped until a node logged since could host one of its replicas:
        within one pass the cluster only gets fuller, so the first failure of a class ends the class.
        Classes are merged by the rank of their first waiting job (a heap), so a long queue of a few
        classes costs a few placement attempts, not one per waiting job.
        """
        self.resolves += 1
        if self.count > self.max_window:
            return self._admit_window()
        started: list[Action] = []
        waiting = self.waiting
        failed, logged = self.failed, len(self.log)  # a class failed since the last release cannot fit
        heap = [(waiting[c][0][0], c, 0) for c in self.nonempty if failed.get(c, -1) != logged and self._may_fit(c)]
        heapq.heapify(heap)
        while heap:
            _, c, i = heapq.heappop(heap)
            queue = self.waiting[c]
            j = queue[i][1]
            got = self.placer.place(j)
            if got is None:
                self.failed[c] = len(self.log)
                continue
            del queue[i]
            self.count -= 1
            if not queue:
                self.nonempty.discard(c)
            self.running[j] = got
            started.append(Action(ActionKind.START, self.scenario.jobs[j].name, "admitted by the direct engine", got))
            if i < len(queue):
                heapq.heappush(heap, (queue[i][0], c, i))
        return started

    def _admit_window(self) -> list[Action]:
        """More jobs wait than the controller's window holds: the highest priorities, then the oldest, in
        queue order (as the controller does)."""
        jobs = self.scenario.jobs
        entries = sorted(e for q in self.waiting for e in q)
        chosen = set(sorted(entries, key=lambda e: (-jobs[e[1]].priority, jobs[e[1]].arrival))[: self.max_window])
        started: list[Action] = []
        for entry in entries:
            j = entry[1]
            c = int(self.cls[j])
            if entry not in chosen or not self._may_fit(c):
                continue
            got = self.placer.place(j)
            if got is None:
                self.failed[c] = len(self.log)
                continue
            self._dequeue(j)
            self.running[j] = got
            started.append(Action(ActionKind.START, jobs[j].name, "admitted by the direct engine", got))
        return started

    def _may_fit(self, c: int) -> bool:
        """False when class ``c`` did not fit and no node logged since could host one of its replicas."""
        since = self.failed.get(c)
        if since is None:
            return True
        fresh = self.log[since:]
        self.failed[c] = len(self.log)
        if not fresh:
            return False
        allowed, cpu, memory, milli, gpus, gpu_memory = self.demand[c]
        st = self.placer.state
        for n in set(fresh):
            if not allowed[n] or st.cpu[n] < cpu or st.memory[n] < memory:
                continue
            if gpus:
                ok = st.gpu[n] >= milli
                if gpu_memory:
                    ok &= st.gpu_mem[n] >= gpu_memory
                if int(ok.sum()) < gpus:
                    continue
            del self.failed[c]
            return True
        return False

    def _enqueue(self, j: int) -> None:
        c = int(self.cls[j])
        bisect.insort(self.waiting[c], (int(self.rank[j]), j))
        self.nonempty.add(c)
        self.count += 1

    def _dequeue(self, j: int) -> None:
        queue = self.waiting[int(self.cls[j])]
        entry = (int(self.rank[j]), j)
        k = bisect.bisect_left(queue, entry)
        if k < len(queue) and queue[k] == entry:
            del queue[k]
            self.count -= 1
            if not queue:
                self.nonempty.discard(int(self.cls[j]))

    def _release(self, placements: Sequence[Placement]) -> None:
        self.placer.release(placements)
        self.log.extend(self.node_index[p.node] for p in placements)

    # Node failures --------------------------------------------------------------------------
    def _lose(self, n: int) -> list[Action]:
        node = self.scenario.nodes[n].name
        actions = []
        for j in [j for j, ps in self.running.items() if any(p.node == node for p in ps)]:
            lost = self.running.pop(j)
            self._release(lost)  # its other nodes (a gang) get room back; this one is blocked below
            self._enqueue(j)
            actions.append(Action(ActionKind.PREEMPT, self.scenario.jobs[j].name, f"node {node!r} was lost", (), lost))
        st = self.placer.state
        self.blocked[n] = (st.cpu[n], st.memory[n], st.gpu[n].copy(), st.gpu_mem[n].copy())
        st.cpu[n] = st.memory[n] = -1
        st.gpu[n] = -1
        self.placer.touch([n])
        return actions

    def _restore(self, n: int) -> None:
        saved = self.blocked.pop(n, None)
        if saved is None:
            return
        st = self.placer.state
        st.cpu[n], st.memory[n], st.gpu[n], st.gpu_mem[n] = saved
        self.placer.touch([n])
        self.log.append(n)

    # Checks ---------------------------------------------------------------------------------
    def check(self, up: np.ndarray) -> list[str]:
        """Violations of the running allocation (``optalloc.verify`` on the running jobs and the nodes up)."""
        problem = self.problem
        names = {self.scenario.jobs[j].name for j in self.running}
        nodes = tuple(n for k, n in enumerate(problem.nodes) if up[k])
        jobs = tuple(job for job in problem.jobs if job.name in names)
        window = Problem(nodes, jobs, gpu_models=problem.gpu_models)
        placements = tuple(p for ps in self.running.values() for p in ps)
        return [str(v) for v in verify(window, Allocation(placements, status=Status.FEASIBLE))]

    @property
    def queued(self) -> int:
        return self.count
