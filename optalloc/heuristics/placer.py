"""The online, incremental placer: one job at a time, irrevocable, on a shared ClusterState.

``Placer(problem, rule).place(j)`` puts every replica of job ``j`` (a gang: all or none; an elastic
job: as many as fit between ``min_replicas`` and ``replicas``) and returns the placements, or None
and leaves the state as it was. ``release(placements)`` gives resources back (departures).

Speed: a rule's score of a node depends only on that node's state and the job, so the placer keeps,
per job class (jobs equal in every field that decides fit and score), the feasibility, score and
share-GPU choice of every node, stamped with the node's version. A decision recomputes only the
nodes that changed since the class was last seen (one vectorised call over that batch), then takes
one masked argmax over all nodes. Identical nodes and repeated job classes, the common case, cost
almost nothing.

The placer owns the versions: change ``state`` only through :meth:`Placer.place`,
:meth:`Placer.take` and :meth:`Placer.release`, or call :meth:`Placer.touch` after changing it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from optalloc.core import ClusterState, Placement, PlacementRule, Problem, Workload
from optalloc.heuristics.fragmentation import FragmentationModel, typical_workload
from optalloc.heuristics.rules import NONE, Candidates, Context, JobView, Rule

log = logging.getLogger(__name__)


@dataclass
class _ClassCache:
    """Per job class: for every node, whether one replica fits, its score, its share GPU."""

    job: JobView
    allowed: np.ndarray  # (n,) bool: model and selector constraints
    version: np.ndarray  # (n,) node version the entries were computed at (-1: never)
    feasible: np.ndarray  # (n,) bool
    score: np.ndarray  # (n,) float64, -inf where infeasible
    share_gpu: np.ndarray  # (n,) int64


class Placer:
    """Places jobs one at a time with a placement rule.

    ``state`` (default: the problem's current allocation) is shared and mutated. ``workload`` is
    FGD's target workload (default: :func:`typical_workload` of the problem's jobs, 95% popularity).
    ``seed`` drives the random rule and random GPU picks.
    """

    def __init__(
        self,
        problem: Problem,
        rule: str | Rule,
        *,
        seed: int = 0,
        state: ClusterState | None = None,
        workload: Workload | None = None,
    ) -> None:
        from optalloc.heuristics.registry import get_rule

        self.problem = problem
        self.rule = rule if isinstance(rule, Rule) else get_rule(rule)
        self.state = ClusterState.of(problem) if state is None else state
        n, slots = self.state.gpu.shape
        self._version = np.zeros(n, dtype=np.int64)
        self._classes: dict[tuple[Any, ...], _ClassCache] = {}
        self._rng = np.random.default_rng(seed)
        kinds = max(problem.max_gpus, 1) + 1
        self._tags = np.zeros((n, kinds), dtype=np.int64)
        if problem.current is not None:
            for p in problem.current.placements:
                self._tag(p, +1)
        frag = None
        if self.rule.needs_workload:
            wl = workload if workload is not None else typical_workload(problem.jobs, problem.model_names)
            frag = FragmentationModel.of(wl, len(problem.model_names))
        capacity = problem.capacity
        self.context = Context(
            max_cpu=int(capacity[:, 0].max()) if n and capacity[:, 0].max() > 0 else 1,
            max_gpu=int(capacity[:, 2].max()) if n and capacity[:, 2].max() > 0 else 1,
            fragmentation=frag,
            rng=self._rng,
        )

    # Public API -----------------------------------------------------------------------------
    def place(self, job: int) -> tuple[Placement, ...] | None:
        """Place job index ``job`` now (all replicas, or as many as fit for an elastic job).

        Returns the placements (replicas numbered from 0), or None when the job does not fit;
        then the state is unchanged.
        """
        spec = self.problem.jobs[job]
        if spec.placement is PlacementRule.SINGLE_NODE and spec.replicas > 1:
            return self._place_single_node(job)
        placed: list[Placement] = []
        spread = spec.placement is PlacementRule.SPREAD
        pack = spec.placement is PlacementRule.PACK
        excluded = np.zeros(len(self._version), dtype=bool) if spread else None
        last = -1
        for replica in range(spec.replicas):
            node = -1
            if pack and last >= 0 and self._fits_at(job, last):
                node = last
            if node < 0:
                node = self.choose(job, exclude=excluded)
            if node < 0:
                break
            placed.append(self.take(job, node, replica))
            if excluded is not None:
                excluded[node] = True
            last = node
        if len(placed) < spec.min_replicas:
            self.release(placed)
            return None
        return tuple(placed)

    def choose(self, job: int, *, exclude: np.ndarray | None = None, only: np.ndarray | None = None) -> int:
        """The node the rule picks for one replica of ``job`` now, or -1 when none fits.

        ``exclude`` (bool (n,)) removes nodes; ``only`` (bool (n,)) keeps just those nodes.
        """
        cache = self._refresh(job)
        feasible = cache.feasible
        if exclude is not None:
            feasible = feasible & ~exclude
        if only is not None:
            feasible = feasible & only
        if self.rule.randomized:
            nodes = np.flatnonzero(feasible)
            return int(nodes[self._rng.integers(len(nodes))]) if len(nodes) else -1
        if exclude is None and only is None:
            best = int(np.argmax(cache.score))
            return best if feasible[best] else -1
        score = np.where(feasible, cache.score, -np.inf)
        best = int(np.argmax(score))
        return best if feasible[best] else -1

    def fits(self, job: int) -> np.ndarray:
        """bool (n,): nodes that can take one more replica of ``job`` now."""
        return self._refresh(job).feasible.copy()

    def scores(self, job: int) -> np.ndarray:
        """float64 (n,): the rule's score of one replica of ``job`` on each node (-inf: does not fit)."""
        return self._refresh(job).score.copy()

    def take(self, job: int, node: int, replica: int = 0) -> Placement:
        """Put one replica of ``job`` on ``node`` (which must fit), GPUs chosen by the rule."""
        cache = self._refresh(job)
        if not cache.feasible[node]:
            raise ValueError(f"replica of job {self.problem.jobs[job].name!r} does not fit node {node}")
        spec = cache.job
        if spec.share:
            gpus: tuple[int, ...] = (int(cache.share_gpu[node]),)
        elif spec.gpus:
            ok = self._slots_ok(spec, np.array([node]))[0]
            gpus = tuple(int(g) for g in np.flatnonzero(ok)[: spec.gpus])
        else:
            gpus = ()
        placement = self.state.take(job, node, gpus, replica)
        self._version[node] += 1
        if spec.tag >= 0:
            self._tags[node, spec.tag] += 1
        return placement

    def release(self, placements: Any) -> None:
        """Give back what ``placements`` hold (departures, or an undone gang)."""
        index = self.problem.node_index
        for p in placements:
            self.state.apply(p, sign=+1)
            self._version[index[p.node]] += 1
            self._tag(p, -1)

    def touch(self, nodes: Any = None) -> None:
        """Forget cached scores of ``nodes`` (default: all) after changing ``state`` directly."""
        if nodes is None:
            self._version += 1
        else:
            self._version[np.asarray(nodes, dtype=np.int64)] += 1

    # Internals ------------------------------------------------------------------------------
    def _tag(self, p: Placement, sign: int) -> None:
        j = self.problem.job_index.get(p.job)
        if j is None:
            return
        spec = self.problem.jobs[j]
        tag = spec.gpus if spec.gpus else (0 if spec.gpu_milli else -1)
        if tag >= 0:
            self._tags[self.problem.node_index[p.node], tag] += sign

    def _key(self, job: int) -> tuple[Any, ...]:
        s = self.problem.jobs[job]
        return (
            s.cpu,
            s.memory,
            s.gpus,
            s.gpu_milli,
            s.gpu_memory,
            tuple(sorted(s.gpu_models)) if s.gpu_demand else (),
            tuple(sorted(s.node_selector.items())),
        )

    def _refresh(self, job: int) -> _ClassCache:
        key = self._key(job)
        cache = self._classes.get(key)
        if cache is None:
            s = self.problem.jobs[job]
            n = len(self._version)
            cache = _ClassCache(
                job=JobView(s.cpu, s.memory, s.gpus, s.gpu_milli, s.gpu_memory),
                allowed=self.problem.allowed_nodes(job),
                version=np.full(n, -1, dtype=np.int64),
                feasible=np.zeros(n, dtype=bool),
                score=np.full(n, -np.inf),
                share_gpu=np.full(n, NONE, dtype=np.int64),
            )
            self._classes[key] = cache
        stale = np.flatnonzero(cache.version != self._version)
        if len(stale):
            self._evaluate(cache, stale)
            cache.version[stale] = self._version[stale]
        return cache

    def _slots_ok(self, job: JobView, nodes: np.ndarray) -> np.ndarray:
        ok = self.state.gpu[nodes] >= job.per_gpu
        if job.gpu_memory:
            ok &= self.state.gpu_mem[nodes] >= job.gpu_memory
        return ok

    def _evaluate(self, cache: _ClassCache, nodes: np.ndarray) -> None:
        job, st = cache.job, self.state
        fit = cache.allowed[nodes] & (st.cpu[nodes] >= job.cpu) & (st.memory[nodes] >= job.memory)
        ok = None
        if job.gpus_used:
            ok = self._slots_ok(job, nodes)
            fit &= ok.sum(axis=1) >= job.gpus_used
        cache.feasible[nodes] = fit
        cache.score[nodes] = -np.inf
        cache.share_gpu[nodes] = NONE
        good = nodes[fit]
        if not len(good) or self.rule.randomized and not job.share:
            return
        ok = ok[fit] if ok is not None else np.zeros((len(good), st.gpu.shape[1]), dtype=bool)
        candidates = Candidates(
            nodes=good,
            gpu=st.gpu[good],
            ok=ok,
            cpu=st.cpu[good],
            memory=st.memory[good],
            model=self.problem.node_model[good],
            gpus=self.problem.node_gpus[good],
            tags=self._tags[good],
        )
        score, share_gpu = self.rule.score(candidates, job, self.context)
        cache.score[good] = score
        cache.share_gpu[good] = share_gpu

    def _fits_at(self, job: int, node: int) -> bool:
        return bool(self._refresh(job).feasible[node])

    def _capacity(self, job: int) -> np.ndarray:
        """int64 (n,): how many replicas of ``job`` each node could take now, all else equal."""
        s, st = self.problem.jobs[job], self.state
        big = np.iinfo(np.int64).max // 4
        per = np.where(self.problem.allowed_nodes(job), big, 0)
        if s.cpu:
            per = np.minimum(per, st.cpu // s.cpu)
        if s.memory:
            per = np.minimum(per, st.memory // s.memory)
        if s.gpus_used:
            share = np.maximum(st.gpu, 0) // s.per_gpu_milli
            if s.gpu_memory:
                share = np.minimum(share, st.gpu_mem // s.gpu_memory)
            per = np.minimum(per, share.sum(axis=1) // (s.gpus if s.gpus else 1))
        result: np.ndarray = np.maximum(per, 0)
        return result

    def _place_single_node(self, job: int) -> tuple[Placement, ...] | None:
        spec = self.problem.jobs[job]
        room = self._capacity(job)
        node = self.choose(job, only=room >= spec.min_replicas)
        if node < 0:
            return None
        count = int(min(room[node], spec.replicas))
        only = np.zeros(len(self._version), dtype=bool)
        only[node] = True
        placed = []
        for replica in range(count):
            if not self._fits_at(job, node):
                break
            placed.append(self.take(job, node, replica))
        if len(placed) < spec.min_replicas:  # pragma: no cover - room said they fit
            self.release(placed)
            return None
        return tuple(placed)
