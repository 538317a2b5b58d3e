"""The online, incremental placer: one job at a time, irrevocable, on a shared ClusterState.

``Placer(problem, rule).place(j)`` puts every replica of job ``j`` (a gang: all or none; an elastic
job: as many as fit between ``min_replicas`` and ``replicas``) and returns the placements, or None
and leaves the state as it was. ``release(placements)`` gives resources back (departures).

Speed: a rule's score of a node depends only on that node's state and the job, so the placer keeps,
per job class (jobs equal in every field that decides fit and score), the feasibility, score and
share-GPU choice of every node. Every change to a node is appended to a change log; a decision
re-scores only the nodes changed since the class was last seen (one vectorised call over that
batch), then takes one masked argmax over all nodes. Repeated job classes and identical nodes,
the common case, cost almost nothing.

The placer owns the log: change ``state`` only through :meth:`Placer.place`, :meth:`Placer.take`
and :meth:`Placer.release`, or call :meth:`Placer.touch` after changing it directly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from optalloc.core import MILLI, ClusterState, FutureValue, Job, Placement, PlacementRule, Problem, Workload
from optalloc.core.fragmentation import FragmentationModel
from optalloc.heuristics.fragmentation import typical_workload
from optalloc.heuristics.rules import NONE, Context, JobView, Rule

log = logging.getLogger(__name__)


@dataclass
class _ClassCache:
    """Per job class: for every node, whether one replica fits, its score, its share GPU."""

    job: JobView
    allowed: np.ndarray  # (n,) bool: model and selector constraints
    seen: int  # position in the change log up to which the entries are current
    feasible: np.ndarray  # (n,) bool
    score: np.ndarray  # (n,) float64, -inf where infeasible
    share_gpu: np.ndarray  # (n,) int64


class _Batch:
    """The :class:`~optalloc.heuristics.rules.Candidates` of a batch of nodes, gathered on first use."""

    def __init__(self, placer: Placer, nodes: np.ndarray, ok: np.ndarray | None) -> None:
        self._placer = placer
        self.nodes = nodes
        self._ok = ok

    @cached_property
    def gpu(self) -> np.ndarray:
        out: np.ndarray = self._placer.state.gpu[self.nodes]
        return out

    @cached_property
    def ok(self) -> np.ndarray:
        if self._ok is None:
            return np.zeros(self.gpu.shape, dtype=bool)
        return self._ok

    @cached_property
    def cpu(self) -> np.ndarray:
        out: np.ndarray = self._placer.state.cpu[self.nodes]
        return out

    @cached_property
    def memory(self) -> np.ndarray:
        out: np.ndarray = self._placer.state.memory[self.nodes]
        return out

    @cached_property
    def model(self) -> np.ndarray:
        out: np.ndarray = self._placer.problem.node_model[self.nodes]
        return out

    @cached_property
    def gpus(self) -> np.ndarray:
        out: np.ndarray = self._placer.problem.node_gpus[self.nodes]
        return out

    @cached_property
    def tags(self) -> np.ndarray:
        out: np.ndarray = self._placer._tags[self.nodes]
        return out

    @cached_property
    def free_gpu(self) -> np.ndarray:
        out: np.ndarray = self._placer._free[self.nodes]
        return out


class Placer:
    """Places jobs one at a time with a placement rule.

    ``state`` (default: the problem's current allocation) is shared and mutated. ``reference`` are
    the jobs whose mix the workload-aware rules expect (default: the problem's jobs; the FGD protocol
    passes the original trace before inflation). ``workload`` is FGD's target workload (default:
    :func:`typical_workload` of ``reference``, 95% popularity). ``seed`` drives the random rule and
    random GPU picks. ``future`` (admission control, see ``SolveOptions.admission_forecast``): a
    one-replica GPU share is placed only where it is worth the future value it takes from its GPU;
    otherwise :meth:`place` returns None with ``held`` set.
    """

    def __init__(
        self,
        problem: Problem,
        rule: str | Rule,
        *,
        seed: int = 0,
        state: ClusterState | None = None,
        workload: Workload | None = None,
        reference: Sequence[Job] | None = None,
        future: FutureValue | None = None,
    ) -> None:
        from optalloc.heuristics.fgd_plus import DemandProfile
        from optalloc.heuristics.registry import get_rule

        self.problem = problem
        self.future = future
        self.held = False  # whether the last place() call held its job back (admission control)
        self.rule = rule if isinstance(rule, Rule) else get_rule(rule)
        self.state = ClusterState.of(problem) if state is None else state
        n = self.state.gpu.shape[0]
        self._n = n
        self._log: list[int] = []  # node index of every change, in order
        self._log_limit = max(8 * n, 100_000)
        self._classes: dict[tuple[Any, ...], _ClassCache] = {}
        self._of_job: dict[int, _ClassCache] = {}
        self._rng = np.random.default_rng(seed)
        self._tags = np.zeros((n, max(problem.max_gpus, 1) + 1), dtype=np.int64)
        if problem.current is not None:
            for p in problem.current.placements:
                self._tag(p, +1)
        # Per-node summaries of the GPU slots, kept in step with the state.
        self._free = np.zeros(n, dtype=np.int64)  # free milli-GPU
        self._whole = np.zeros(n, dtype=np.int64)  # fully free GPUs
        self._largest = np.zeros(n, dtype=np.int64)  # most free milli on one GPU
        self._summarise(np.arange(n))
        jobs = problem.jobs if reference is None else tuple(reference)
        frag = profile = None
        if self.rule.needs_workload:
            wl = workload if workload is not None else typical_workload(jobs, problem.model_names)
            frag = FragmentationModel.of(wl, len(problem.model_names))
        if self.rule.needs_profile:
            profile = DemandProfile.of(jobs, problem.model_names)
        capacity = problem.capacity
        self.context = Context(
            max_cpu=int(capacity[:, 0].max()) if n and capacity[:, 0].max() > 0 else 1,
            max_gpu=int(capacity[:, 2].max()) if n and capacity[:, 2].max() > 0 else 1,
            fragmentation=frag,
            rng=self._rng,
            profile=profile,
        )

    # Public API -----------------------------------------------------------------------------
    def place(self, job: int) -> tuple[Placement, ...] | None:
        """Place job index ``job`` now (all replicas, or as many as fit for an elastic job).

        Returns the placements (replicas numbered from 0), or None when the job does not fit;
        then the state is unchanged.
        """
        spec = self.problem.jobs[job]
        self.held = False
        if spec.placement is PlacementRule.SINGLE_NODE and spec.replicas > 1:
            return self._place_single_node(job)
        if spec.replicas == 1:
            cache = self._refresh(job)
            node = self._best(cache)
            if node >= 0 and self.future is not None and spec.gpu_milli:
                return self._admit_share(cache, job, node)
            return None if node < 0 else (self._take(cache, job, node, 0),)
        placed: list[Placement] = []
        spread = spec.placement is PlacementRule.SPREAD
        pack = spec.placement is PlacementRule.PACK
        excluded = np.zeros(self._n, dtype=bool) if spread else None
        last = -1
        for replica in range(spec.replicas):
            cache = self._refresh(job)
            node = last if pack and last >= 0 and cache.feasible[last] else self._best(cache, exclude=excluded)
            if node < 0:
                break
            placed.append(self._take(cache, job, node, replica))
            if excluded is not None:
                excluded[node] = True
            last = node
        if len(placed) < (spec.min_replicas or spec.replicas):
            self.release(placed)
            return None
        return tuple(placed)

    def choose(self, job: int, *, exclude: np.ndarray | None = None, only: np.ndarray | None = None) -> int:
        """The node the rule picks for one replica of ``job`` now, or -1 when none fits.

        ``exclude`` (bool (n,)) removes nodes; ``only`` (bool (n,)) keeps just those nodes.
        """
        return self._best(self._refresh(job), exclude=exclude, only=only)

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
        return self._take(cache, job, node, replica)

    def release(self, placements: Iterable[Placement]) -> None:
        """Give back what ``placements`` hold (departures, or an undone gang)."""
        index = self.problem.node_index
        for p in placements:
            self.state.apply(p, sign=+1)
            node = index[p.node]
            self._tag(p, -1)
            self._changed(node)

    def touch(self, nodes: Iterable[int] | None = None) -> None:
        """Forget cached scores of ``nodes`` (default: all) after changing ``state`` directly."""
        changed = np.arange(self._n) if nodes is None else np.asarray(list(nodes), dtype=np.int64)
        self._summarise(changed)
        self._log.extend(changed.tolist())
        if len(self._log) > self._log_limit:
            self._trim()

    # Internals ------------------------------------------------------------------------------
    def _best(self, cache: _ClassCache, *, exclude: np.ndarray | None = None, only: np.ndarray | None = None) -> int:
        if not self._n:
            return -1
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
        best = int(np.argmax(np.where(feasible, cache.score, -np.inf)))
        return best if feasible[best] else -1

    def _take(self, cache: _ClassCache, job: int, node: int, replica: int) -> Placement:
        spec = cache.job
        if spec.share:
            gpus: tuple[int, ...] = (int(cache.share_gpu[node]),)
        elif spec.gpus:
            ok = self._slots_ok(spec, np.array([node]))[0]
            gpus = tuple(int(g) for g in np.flatnonzero(ok)[: spec.gpus])
        else:
            gpus = ()
        placement = self.state.take(job, node, gpus, replica)
        if spec.tag >= 0:
            self._tags[node, spec.tag] += 1
        self._changed(node)
        return placement

    def _admit_share(self, cache: _ClassCache, job: int, node: int) -> tuple[Placement, ...] | None:
        """Admission control for a one-replica GPU share (``future`` set): place it where the rule
        chose if the share is worth the future value it takes from that GPU, else on the GPU where it
        takes least if that one is worth it, else hold it back (``held``)."""
        assert self.future is not None
        share = cache.job.share
        value = float(self.problem.replica_value[job])
        gpu = int(cache.share_gpu[node])
        used = MILLI - int(self.state.gpu[node, gpu])
        if value + float(self.future.gain(np.array([used]), share)[0]) >= 0:
            return (self._take(cache, job, node, 0),)
        nodes = np.flatnonzero(cache.feasible)
        slots = self._slots_ok(cache.job, nodes)
        gains = np.where(slots, self.future.gain(MILLI - self.state.gpu[nodes], share), -np.inf)
        best = int(np.argmax(gains))
        row, column = divmod(best, gains.shape[1])
        if value + gains[row, column] < 0:
            self.held = True
            return None
        placement = self.state.take(job, int(nodes[row]), (int(column),), 0)
        if cache.job.tag >= 0:
            self._tags[nodes[row], cache.job.tag] += 1
        self._changed(int(nodes[row]))
        return (placement,)

    def _changed(self, node: int) -> None:
        free = [v for v in self.state.gpu[node].tolist() if v > 0]  # a handful of slots: plain Python
        self._free[node] = sum(free)
        self._whole[node] = sum(1 for v in free if v >= MILLI)
        self._largest[node] = max(free, default=0)
        self._log.append(node)
        if len(self._log) > self._log_limit:
            self._trim()

    def _trim(self) -> None:
        """Drop the log entries every class has seen (a long simulation must not grow it forever)."""
        end = len(self._log)
        for cache in self._classes.values():
            if end - cache.seen > self._n:
                cache.seen = -1  # it re-scores every node anyway
        low = min((c.seen for c in self._classes.values() if c.seen >= 0), default=end)
        del self._log[:low]
        for cache in self._classes.values():
            if cache.seen >= 0:
                cache.seen -= low

    def _summarise(self, nodes: np.ndarray) -> None:
        gpu = self.state.gpu[nodes]
        self._free[nodes] = np.maximum(gpu, 0).sum(axis=1)
        self._whole[nodes] = (gpu >= MILLI).sum(axis=1)
        self._largest[nodes] = np.maximum(gpu, 0).max(axis=1) if gpu.shape[1] else 0

    def _tag(self, p: Placement, sign: int) -> None:
        j = self.problem.job_index.get(p.job)
        if j is None:
            return
        spec = self.problem.jobs[j]
        tag = spec.gpus if spec.gpus else (0 if spec.gpu_milli else -1)
        if tag >= 0:
            self._tags[self.problem.node_index[p.node], tag] += sign

    def _cache(self, job: int) -> _ClassCache:
        cache = self._of_job.get(job)
        if cache is not None:
            return cache
        s = self.problem.jobs[job]
        key = (
            s.cpu,
            s.memory,
            s.gpus,
            s.gpu_milli,
            s.gpu_memory,
            tuple(sorted(s.gpu_models)) if s.gpu_demand else (),
            tuple(sorted(s.node_selector.items())),
        )
        cache = self._classes.get(key)
        if cache is None:
            n = self._n
            cache = _ClassCache(
                job=JobView(s.cpu, s.memory, s.gpus, s.gpu_milli, s.gpu_memory),
                allowed=self.problem.allowed_nodes(job),
                seen=-1,
                feasible=np.zeros(n, dtype=bool),
                score=np.full(n, -np.inf),
                share_gpu=np.full(n, NONE, dtype=np.int64),
            )
            self._classes[key] = cache
        self._of_job[job] = cache
        return cache

    def _refresh(self, job: int) -> _ClassCache:
        cache = self._cache(job)
        end = len(self._log)
        if cache.seen == end:
            return cache
        if cache.seen < 0 or end - cache.seen > self._n:
            stale = np.arange(self._n)
        else:
            stale = np.array(sorted(set(self._log[cache.seen :])), dtype=np.int64)
        if len(stale):
            self._evaluate(cache, stale)
        cache.seen = end
        return cache

    def _slots_ok(self, job: JobView, nodes: np.ndarray) -> np.ndarray:
        ok: np.ndarray = self.state.gpu[nodes] >= job.per_gpu
        if job.gpu_memory:
            ok &= self.state.gpu_mem[nodes] >= job.gpu_memory
        return ok

    def _evaluate(self, cache: _ClassCache, nodes: np.ndarray) -> None:
        job, st = cache.job, self.state
        fit = cache.allowed[nodes] & (st.cpu[nodes] >= job.cpu) & (st.memory[nodes] >= job.memory)
        if job.gpu_memory and job.gpus_used:
            fit &= self._slots_ok(job, nodes).sum(axis=1) >= job.gpus_used
        elif job.gpus:
            fit &= self._whole[nodes] >= job.gpus
        elif job.share:
            fit &= self._largest[nodes] >= job.share
        cache.feasible[nodes] = fit
        good = nodes[fit]
        if len(good) < len(nodes):
            bad = nodes[~fit]
            cache.score[bad] = -np.inf
            cache.share_gpu[bad] = NONE
        if not len(good) or (self.rule.randomized and not job.share):
            return
        ok = self._slots_ok(job, good) if job.share or (self.rule.needs_workload and job.gpus) else None
        score, share_gpu = self.rule.score(_Batch(self, good, ok), job, self.context)  # type: ignore[arg-type]
        cache.score[good] = score
        cache.share_gpu[good] = share_gpu

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
                share = np.minimum(share, np.maximum(st.gpu_mem, 0) // s.gpu_memory)
            per = np.minimum(per, share.sum(axis=1) // (s.gpus if s.gpus else 1))
        result: np.ndarray = np.maximum(per, 0)
        return result

    def _place_single_node(self, job: int) -> tuple[Placement, ...] | None:
        spec = self.problem.jobs[job]
        room = self._capacity(job)
        node = self.choose(job, only=room >= (spec.min_replicas or spec.replicas))
        if node < 0:
            return None
        placed = []
        for replica in range(int(min(room[node], spec.replicas))):
            cache = self._refresh(job)
            if not cache.feasible[node]:  # pragma: no cover - room said they fit
                break
            placed.append(self._take(cache, job, node, replica))
        if len(placed) < (spec.min_replicas or spec.replicas):  # pragma: no cover - room said they fit
            self.release(placed)
            return None
        return tuple(placed)
