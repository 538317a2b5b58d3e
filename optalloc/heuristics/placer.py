"""The online, incremental placer: one job at a time, irrevocable, on a shared ClusterState.

``Placer(problem, rule).place(j)`` puts every replica of job ``j`` (a gang: all or none; an elastic
job: as many as fit between ``min_replicas`` and ``replicas``) and returns the placements, or None
and leaves the state as it was. ``release(placements)`` gives resources back (departures).

Speed. A rule's score of a node depends only on that node's state and the job, so the placer keeps,
per job class (jobs equal in every field that decides fit and score), the score of every node
(``-inf`` where one replica does not fit) and the GPU a share would take there; a decision is one
argmax over the class's row. Every change to a node is appended to a change log, and a class's row
is brought up to date when the class is next placed, re-scoring only the nodes changed since:

- a few nodes (up to :data:`SCALAR_NODES`) one by one in plain Python, with the rule's scalar twin
  (``Rule.scalar``), from Python copies of the per-node summaries: numpy's cost per call exceeds the
  arithmetic on so few nodes;
- more nodes in one vectorised call of the rule;
- for the costly rules (fgd, fgd-plus: a fragmentation model per option), through interned node
  *states*: states (static shape, free CPU, memory and GPU slots) are interned, and a class scores
  each distinct state once, however many nodes reach it and however often. Early in a run thousands
  of nodes share a handful of states; later most changes lead to states some node was in before.
  A class mostly meets one or two new states per decision: up to :data:`SCALAR_STATES` of them are
  profiled and scored one by one in plain Python, with the rule's state twin (``Rule.state_scalar``),
  which gives the same floats (fgd and fgd-plus 20-24% faster on the openb default list).

The placer owns the bookkeeping: change ``state`` only through :meth:`Placer.place`,
:meth:`Placer.take` and :meth:`Placer.release`, or call :meth:`Placer.touch` after changing it
directly.

Why this module is one piece of ~950 lines (past the house's ~600): it holds one invariant -- a class's
row of scores is current once every node changed since its stamp in the change log is re-scored --
and the three scoring paths, the change log, its trimming and the interned states all read and write
the same per-class caches to keep it. Split across files, each part would reach into the others'
private arrays; kept together, the invariant can be checked by reading one file. What is separable
lives elsewhere already: the rules' scores (``rules.py``), the fragmentation measure
(``fragmentation.py``, over ``core/fragmentation.py``'s definition), the queue orders (``orders.py``)
and the offline pass (``allocate.py``).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from optalloc.core import (
    MILLI,
    ClusterState,
    FutureValue,
    Job,
    Placement,
    PlacementRule,
    Problem,
    ProblemError,
    Workload,
)
from optalloc.core.fragmentation import FragmentationModel, GpuProfile
from optalloc.core.state import placement_of
from optalloc.heuristics.fragmentation import job_kinds, typical_workload
from optalloc.heuristics.rules import NONE, Context, JobView, NodeScalar, Rule

log = logging.getLogger(__name__)

_UNKNOWN = np.float32(np.nan)
_NINF = -math.inf
_ALL_FOUR = np.frombuffer(np.ones(4, dtype=bool).tobytes(), dtype=np.uint32)[0]
#: Up to this many changes (log entries) since a class last looked, it re-scores the nodes one by one with
#: the rule's scalar twin (each once, and only those it may use).
SCALAR_NODES = 48
#: Up to this many states new to a class, it scores them one by one with the rule's state twin
#: (``Rule.state_scalar``; fgd, fgd-plus).
SCALAR_STATES = 12
#: Up to this many log entries since a class last looked, they are deduplicated in plain Python.
SMALL_LOG = 64


@dataclass
class _ClassCache:
    """Per job class: for every node its score (-inf: one replica does not fit) and its share GPU."""

    job: JobView
    allowed: np.ndarray  # (n,) bool: model and selector constraints
    everywhere: bool  # allowed on every node
    need: np.ndarray  # (4,) least free cpu, memory, fully free GPUs, largest free share to fit
    score: np.ndarray  # (n,) float64, -inf where infeasible
    share_gpu: np.ndarray  # (n,) int
    seen: int = -1  # position in the change log up to which ``score`` is current
    # Per interned node state (costly rules): score (NaN: not scored yet) and share GPU.
    memo_score: np.ndarray | None = None
    memo_slot: np.ndarray | None = None
    allowed_static: np.ndarray | None = None  # bool per static node group

    scalar: bool = False  # few changed nodes are re-scored with the rule's scalar twin
    state_scalar: bool = False  # few new states are scored with the rule's state twin
    hostable: bool | None = None  # whether one replica fits an empty node (None: not asked yet)

    @property
    def feasible(self) -> np.ndarray:
        out: np.ndarray = self.score > -np.inf
        return out


class _Batch:
    """The :class:`~optalloc.heuristics.rules.Candidates` of some rows of a source, gathered on first use.

    (Plain ``__getattr__`` rather than ``functools.cached_property``: this object lives for one rule
    call, and the property's lock costs more than the gather on a few rows.)
    """

    def __init__(
        self,
        source: Any,
        rows: np.ndarray,
        ok: np.ndarray | None,
        frag: _FragCache | None = None,
        gpu: np.ndarray | None = None,
    ) -> None:
        self._source = source
        self.nodes = rows
        self._ok = ok
        self._frag = frag
        if gpu is not None:
            self.gpu = gpu

    def __getattr__(self, name: str) -> Any:
        rows = self.nodes
        if name == "ok":
            value = self._ok if self._ok is not None else np.zeros(self.gpu.shape, dtype=bool)
        elif name == "free_gpu":
            value = self._source.free.take(rows)
        elif name == "profile":
            value = None if self._frag is None else self._frag.profile(rows)
        elif name == "fragmentation":
            value = None if self._frag is None else self._frag.value.take(rows)
        elif name in ("cpu", "memory", "model", "gpus"):
            value = getattr(self._source, name).take(rows)
        elif name in ("gpu", "tags"):
            value = getattr(self._source, name).take(rows, axis=0)
        else:
            raise AttributeError(name)
        self.__dict__[name] = value
        return value


class _Nodes:
    """The cluster's nodes as rows for a rule (with the placer's per-node summaries)."""

    def __init__(self, placer: Placer) -> None:
        self.gpu = placer.state.gpu
        self.cpu = placer.state.cpu
        self.memory = placer.state.memory
        self.model = placer.problem.node_model
        self.gpus = placer.problem.node_gpus
        self.tags = placer._tags
        self.free = placer._free


class _FragCache:
    """Fragmentation profile and value of every interned state, computed once per state."""

    def __init__(self, model: FragmentationModel, states: _States) -> None:
        self.model = model
        self.states = states
        t = len(model.columns)
        self.count = np.zeros((states.capacity, t), dtype=np.int64)
        self.usable = np.zeros((states.capacity, t), dtype=np.int64)
        self.value = np.zeros(states.capacity)
        self.done = 0  # states [0, done) are profiled

    def update(self) -> None:
        """Profile the states interned since the last call."""
        st, lo, hi = self.states, self.done, self.states.size
        if hi <= lo:
            return
        if len(self.value) < st.capacity:
            self._grow()
        if hi - lo <= SCALAR_STATES:  # a few new states: plain Python costs less than numpy's calls
            model = self.model
            for sid in range(lo, hi):
                count, usable = model.profile_one(st.gpu[sid].tolist())
                self.count[sid] = count
                self.usable[sid] = usable
                self.value[sid] = model.of_one(st.free.item(sid), count, usable, st.cpu.item(sid), st.model.item(sid))
            self.done = hi
            return
        prof = self.model.profile(st.gpu[lo:hi])
        self.count[lo:hi] = prof.count
        self.usable[lo:hi] = prof.usable
        self.value[lo:hi] = self.model.of_profile(prof, st.cpu[lo:hi], st.model[lo:hi])
        self.done = hi

    def _grow(self) -> None:
        grow = self.states.capacity - len(self.value)
        if grow > 0:
            self.count = np.concatenate([self.count, np.zeros((grow, self.count.shape[1]), dtype=np.int64)])
            self.usable = np.concatenate([self.usable, np.zeros((grow, self.usable.shape[1]), dtype=np.int64)])
            self.value = np.concatenate([self.value, np.zeros(grow)])

    def profile(self, rows: np.ndarray) -> GpuProfile:
        return GpuProfile(self.states.free.take(rows), self.count.take(rows, axis=0), self.usable.take(rows, axis=0))


class _States:
    """Interned node states: a node's static group and its free CPU, memory, GPU slots (and tags).

    Two nodes in the same state score the same for every job class, so the costly rules score a
    state once per class (``_ClassCache.memo_score``). ``node_state[i]`` is node ``i``'s state.
    """

    _ARRAYS = ("gpu", "gpu_mem", "cpu", "memory", "static", "model", "gpus", "tags", "free", "feat")

    def __init__(self, placer: Placer, *, tags: bool, gpu_memory: bool) -> None:
        problem = placer.problem
        n = placer._n
        self._placer = placer
        self._with_tags = tags
        self._with_gpu_memory = gpu_memory
        groups: dict[tuple[Any, ...], int] = {}
        self.static_of_node = [groups.setdefault(node.shape, len(groups)) for node in problem.nodes]
        rep = np.zeros(len(groups), dtype=np.int64)
        rep[np.array(self.static_of_node, dtype=np.int64)] = np.arange(n)
        self.group_node = rep  # (groups,) one node of each static group
        self.index: dict[tuple[Any, ...], int] = {}
        self.size = 0
        self.capacity = max(1024, 2 * n)
        width = placer.state.gpu.shape[1]
        self.gpu = np.zeros((self.capacity, width), dtype=np.int64)
        self.gpu_mem = np.zeros((self.capacity, width), dtype=np.int64)
        self.cpu = np.zeros(self.capacity, dtype=np.int64)
        self.memory = np.zeros(self.capacity, dtype=np.int64)
        self.static = np.zeros(self.capacity, dtype=np.int64)
        self.model = np.zeros(self.capacity, dtype=np.int64)
        self.gpus = np.zeros(self.capacity, dtype=np.int64)
        self.tags = np.zeros((self.capacity, placer._tags.shape[1]), dtype=np.int64)
        self.free = np.zeros(self.capacity, dtype=np.int64)
        self.feat = np.zeros((self.capacity, 4), dtype=np.int64)  # as Placer._feat
        self.node_state = np.zeros(n, dtype=np.int64)
        for i in range(n):
            self.node_state[i] = self.intern(i)

    def intern(self, node: int, row: list[int] | None = None) -> int:
        """The state id of node ``node``'s current state (a new id when no node was ever in it);
        ``row``: its GPU slots as a list, when the caller has them."""
        placer = self._placer
        st = placer.state
        if row is None:
            row = st.gpu[node].tolist()
        key: tuple[Any, ...] = (self.static_of_node[node], st.cpu.item(node), st.memory.item(node), *row)
        if self._with_gpu_memory:
            key += tuple(st.gpu_mem[node].tolist())
        if self._with_tags:
            key += tuple(placer._tags[node].tolist())
        sid = self.index.get(key)
        if sid is not None:
            return sid
        sid = self.size
        if sid == self.capacity:
            self._grow()
        self.index[key] = sid
        self.size += 1
        self.gpu[sid] = row
        self.gpu_mem[sid] = st.gpu_mem[node]
        self.cpu[sid] = key[1]
        self.memory[sid] = key[2]
        self.static[sid] = key[0]
        self.model[sid] = placer.problem.node_model[node]
        self.gpus[sid] = placer.problem.node_gpus[node]
        self.tags[sid] = placer._tags[node]
        self.free[sid] = placer._free[node]
        self.feat[sid] = placer._feat[node]
        return sid

    def _grow(self) -> None:
        extra = self.capacity
        for name in self._ARRAYS:
            old = getattr(self, name)
            setattr(self, name, np.concatenate([old, np.zeros((extra, *old.shape[1:]), dtype=old.dtype)]))
        self.capacity += extra


TIE_BREAKS = ("name", "index")


def node_keys(problem: Problem, tie_break: str = "name", seed: int = 0) -> np.ndarray:
    """float64 (n,) in (0, 1): which node wins a tie of scores (the largest key).

    ``name``: a seeded hash of the node's name: a fixed random order of the nodes that does not
    depend on where they are listed (upstream's simulator gives nodes random name prefixes and
    breaks ties by the smallest name: the same idea). The same nodes listed in any order get the same
    answer. ``index``: the lowest index, i.e. the order of the node list, for callers whose list
    order is a preference.
    """
    if tie_break not in TIE_BREAKS:
        raise ProblemError("tie_break", tie_break, f"is not one of {', '.join(TIE_BREAKS)}")
    n = len(problem.nodes)
    if tie_break == "index":
        rank = np.arange(n)
    else:
        salt = int(seed).to_bytes(16, "little", signed=True)
        digest = np.array(
            [
                int.from_bytes(hashlib.blake2b(node.name.encode(), digest_size=8, key=salt).digest(), "big")
                for node in problem.nodes
            ],
            dtype=np.uint64,
        )
        rank = np.empty(n, dtype=np.int64)
        if len(np.unique(digest)) == n:
            rank[np.argsort(digest, kind="stable")] = np.arange(n)
        else:  # pragma: no cover - a 64-bit collision: settle it by the names
            rank[sorted(range(n), key=lambda i: (int(digest[i]), problem.nodes[i].name))] = np.arange(n)
    out: np.ndarray = (n - rank) / (n + 1.0)
    return out


class Placer:
    """Places jobs one at a time with a placement rule.

    ``state`` (default: the problem's current allocation) is shared and mutated. ``reference`` are
    the jobs whose mix the workload-aware rules expect (default: the problem's jobs; the FGD protocol
    passes the original trace before inflation). ``workload`` is FGD's target workload (default:
    :func:`typical_workload` of ``reference``, 95% popularity). ``seed`` drives the random rule and
    random GPU picks. ``future`` (admission control, see ``SolveOptions.admission_forecast``): a
    one-replica GPU share is placed only where it is worth the future value it takes from its GPU;
    otherwise :meth:`place` returns None with ``held`` set. ``tie_break``: which of equally scored
    nodes wins, ``name`` (default: a fixed order of the node names, seeded by ``seed``, so that the
    order of the node list does not matter) or ``index`` (the first in the node list);
    see :func:`node_keys`.
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
        tie_break: str = "name",
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
        self._classes: dict[tuple[Any, ...], _ClassCache] = {}
        self._class_of: list[_ClassCache | None] = [None] * len(problem.jobs)
        self._hostable_of: list[bool | None] = [None] * len(problem.jobs)
        self._hostable: dict[tuple[Any, ...], bool] = {}
        self._rng = np.random.default_rng(seed)
        self._tags = np.zeros((n, max(problem.max_gpus, 1) + 1), dtype=np.int64)
        if problem.current is not None:
            for p in problem.current.placements:
                self._tag(p, +1)
        # Per-node summaries, kept in step with the state: free milli-GPU, and what a replica needs
        # to fit (free cpu, memory, fully free GPUs, most free milli on one GPU) for one comparison.
        self._free = np.zeros(n, dtype=np.int64)
        self._feat = np.zeros((n, 4), dtype=np.int64)
        self._summarise(np.arange(n))
        self._nodes = _Nodes(self)
        # Ties between equal scores go to the node with the largest key (module doc). Integer scores
        # carry the key in their fraction, so that one argmax settles both.
        self.tie_break = tie_break
        self._key = node_keys(problem, tie_break, seed)
        self._fold = self.rule.integer_scores
        self._simple = self._fold and not self.rule.randomized and n > 0  # a decision is one argmax
        self._py_key: list[float] = self._key.tolist()
        self._py_zero: list[float] = [0.0] * n
        self._node_gpus: list[int] = problem.node_gpus.tolist()
        self._node_names: list[str] = [node.name for node in problem.nodes]
        self._scalar = NodeScalar()
        jobs = problem.jobs if reference is None else tuple(reference)
        frag = profile = None
        kinds = job_kinds(jobs) if self.rule.needs_profile or (self.rule.needs_workload and workload is None) else None
        if self.rule.needs_workload:
            wl = workload if workload is not None else typical_workload(jobs, problem.model_names, kinds=kinds)
            frag = FragmentationModel.of(wl, len(problem.model_names))
        if self.rule.needs_profile:
            cluster = (int(problem.capacity[:, 0].sum()), int(problem.capacity[:, 2].sum())) if n else None
            profile = DemandProfile.of(jobs, problem.model_names, kinds=kinds, cluster=cluster)
        capacity = problem.capacity
        self.context = Context(
            max_cpu=int(capacity[:, 0].max()) if n and capacity[:, 0].max() > 0 else 1,
            max_gpu=int(capacity[:, 2].max()) if n and capacity[:, 2].max() > 0 else 1,
            fragmentation=frag,
            rng=self._rng,
            profile=profile,
        )
        # The change log: node index of every change, in order (a numpy buffer, so that the nodes a
        # class has not seen are a view of it, not a Python list to convert).
        self._log = np.zeros(max(1024, 4 * n), dtype=np.int64)
        self._log_len = 0
        self._log_base = 0  # entries trimmed off the front so far: absolute position = base + index
        self._log_limit = max(8 * n, 100_000)
        self._every = np.arange(n)
        # A node a class could not use stays unusable while nodes only fill up; ``_freed[i]`` is the
        # absolute log position of the last change that may have given node i resources back (a
        # release, a touch), -1 if none, and ``_last_freed`` the latest of them.
        self._freed = np.full(n, -1, dtype=np.int64)
        self._last_freed = -1
        self._flag = np.zeros(n, dtype=bool)  # scratch for deduplicating log entries
        # Costly rules: scores remembered per interned node state.
        self._states: _States | None = None
        self._frag: _FragCache | None = None
        if self.rule.needs_workload and not self.rule.randomized and n:
            gpu_memory = bool(problem.jobs) and bool(problem.job_gpu_memory.any())
            self._states = _States(self, tags=self.rule.uses_tags, gpu_memory=gpu_memory)
            if frag is not None:
                self._frag = _FragCache(frag, self._states)

    # Public API -----------------------------------------------------------------------------
    def place(self, job: int) -> tuple[Placement, ...] | None:
        """Place job index ``job`` now (all replicas, or as many as fit for an elastic job).

        Returns the placements (replicas numbered from 0), or None when the job does not fit;
        then the state is unchanged.
        """
        spec = self.problem.jobs[job]
        self.held = False
        if spec.replicas == 1:
            cache = self._current(job)
            if self._simple:  # the best score wins
                score = cache.score
                node = int(score.argmax())
                if not score.item(node) > _NINF:
                    return None
            else:
                node = self._best(cache)
                if node < 0:
                    return None
            if self.future is not None and spec.gpu_milli:
                return self._admit_share(cache, job, node)
            return (self._take(cache, job, node, 0),)
        if spec.placement is PlacementRule.SINGLE_NODE:
            return self._place_single_node(job)
        placed: list[Placement] = []
        spread = spec.placement is PlacementRule.SPREAD
        pack = spec.placement is PlacementRule.PACK
        excluded = np.zeros(self._n, dtype=bool) if spread else None
        last = -1
        for replica in range(spec.replicas):
            cache = self._current(job)
            node = last if pack and last >= 0 and cache.score[last] > -np.inf else self._best(cache, exclude=excluded)
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
        return self._best(self._current(job), exclude=exclude, only=only)

    def fits(self, job: int) -> np.ndarray:
        """bool (n,): nodes that can take one more replica of ``job`` now."""
        return self._current(job).feasible

    def scores(self, job: int) -> np.ndarray:
        """float64 (n,): the rule's score of one replica of ``job`` on each node (-inf: does not fit)."""
        score = self._current(job).score
        return np.floor(score) if self._fold else score.copy()

    def take(self, job: int, node: int, replica: int = 0) -> Placement:
        """Put one replica of ``job`` on ``node`` (which must fit), GPUs chosen by the rule."""
        cache = self._current(job)
        if not cache.score[node] > -np.inf:
            raise ValueError(f"replica of job {self.problem.jobs[job].name!r} does not fit node {node}")
        return self._take(cache, job, node, replica)

    def release(self, placements: Iterable[Placement]) -> None:
        """Give back what ``placements`` hold (departures, or an undone gang)."""
        index = self.problem.node_index
        for p in placements:
            self.state.apply(p, sign=+1)
            node = index[p.node]
            self._tag(p, -1)
            self._mark_freed(node)
            self._changed(node)

    def touch(self, nodes: Iterable[int] | None = None) -> None:
        """Forget cached scores of ``nodes`` (default: all) after changing ``state`` directly."""
        changed = np.arange(self._n) if nodes is None else np.asarray(list(nodes), dtype=np.int64)
        self._summarise(changed)
        for node in changed.tolist():
            if self._states is not None:
                self._states.node_state[node] = self._states.intern(node)
            self._mark_freed(node)
            self._logged(node)

    def hostable(self, job: int) -> bool:
        """Whether job ``job`` fits the empty cluster (``Problem.hostable``), remembered per job class."""
        known = self._hostable_of[job]
        if known is None:
            cache = self._class_of[job] or self._cache(job)
            s = self.problem.jobs[job]
            if s.replicas == 1:  # one replica: whether the class fits an empty node
                if cache.hostable is None:  # Problem.hostable for one replica: some empty node fits it
                    cache.hostable = bool(self.problem.fits_empty(job).any())
                self._hostable_of[job] = cache.hostable
                return cache.hostable
            key = (id(cache), s.replicas, s.min_replicas, s.placement)
            known = self._hostable.get(key)
            if known is None:
                known = self._hostable[key] = self.problem.hostable(job)
            self._hostable_of[job] = known
        return known

    # Decisions ------------------------------------------------------------------------------
    def _best(self, cache: _ClassCache, *, exclude: np.ndarray | None = None, only: np.ndarray | None = None) -> int:
        if not self._n:
            return -1
        score = cache.score
        if exclude is not None or only is not None:
            score = score.copy()
            if exclude is not None:
                score[exclude] = -np.inf
            if only is not None:
                score[~only] = -np.inf
        if self.rule.randomized:
            nodes = np.flatnonzero(score > -np.inf)
            return int(nodes[self._rng.integers(len(nodes))]) if len(nodes) else -1
        if not self._fold:  # fractional scores: the best, then the largest key among equals
            top = score.max()
            score = np.where(score == top, self._key, -np.inf) if top > -np.inf else score
        best = int(score.argmax())
        return best if score[best] > -np.inf else -1

    def _take(self, cache: _ClassCache, job: int, node: int, replica: int) -> Placement:
        """Put one replica of the class's ``job`` on ``node``: the state, the summaries, the log.

        What :meth:`ClusterState.take` does, with the node's GPU row read once in plain Python.
        """
        spec = cache.job
        st = self.state
        gpu = st.gpu
        row = gpu[node].tolist()
        if spec.share:
            g = int(cache.share_gpu[node])
            gpus: tuple[int, ...] = (g,)
            row[g] -= spec.share
            gpu[node, g] = row[g]
            milli = spec.share
        elif spec.gpus:
            if spec.gpu_memory:
                mem = st.gpu_mem[node].tolist()
                free = [g for g, v in enumerate(row) if v >= MILLI and mem[g] >= spec.gpu_memory]
            else:
                free = [g for g, v in enumerate(row) if v >= MILLI]
            gpus = tuple(free[: spec.gpus])
            for g in gpus:
                row[g] -= MILLI
                gpu[node, g] = row[g]
            milli = MILLI
        else:
            gpus = ()
            milli = 0
        if spec.gpu_memory:
            for g in gpus:
                st.gpu_mem[node, g] -= spec.gpu_memory
        cpu = st.cpu.item(node) - spec.cpu
        memory = st.memory.item(node) - spec.memory
        st.cpu[node] = cpu
        st.memory[node] = memory
        if spec.gpus or spec.share:
            tag = spec.gpus if spec.gpus else 0
            self._tags[node, tag] += 1
        self._summary(node, row, cpu, memory)
        return placement_of(self.problem.jobs[job].name, replica, self._node_names[node], gpus, milli)

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

    # Bookkeeping ----------------------------------------------------------------------------
    def _changed(self, node: int) -> None:
        st = self.state
        self._summary(node, st.gpu[node].tolist(), st.cpu.item(node), st.memory.item(node))

    def _summary(self, node: int, row: list[int], cpu: int, memory: int) -> None:
        """Bring node ``node``'s summaries up to date (its GPU slots ``row``, free ``cpu`` and
        ``memory``), intern its state and log the change."""
        free = whole = largest = 0
        for v in row:  # a handful of slots: plain Python
            if v > 0:
                free += v
                if v >= MILLI:
                    whole += 1
                if v > largest:
                    largest = v
        self._free[node] = free
        feat = self._feat
        feat[node, 0] = cpu
        feat[node, 1] = memory
        feat[node, 2] = whole
        feat[node, 3] = largest
        self._py_cpu[node], self._py_memory[node], self._py_free[node] = cpu, memory, free
        self._py_whole[node], self._py_largest[node] = whole, largest
        if self._states is not None:
            self._states.node_state[node] = self._states.intern(node, row)
        self._logged(node)

    def _mark_freed(self, node: int) -> None:
        """Node ``node`` may have resources back (its next log entry): classes must re-score it even
        where they found it unusable."""
        at = self._log_base + self._log_len
        self._freed[node] = at
        self._last_freed = at

    def _logged(self, node: int) -> None:
        """Append ``node`` to the change log."""
        end = self._log_len
        if end == len(self._log):
            if end >= self._log_limit:
                self._trim()
                end = self._log_len
            if end == len(self._log):
                self._log = np.concatenate([self._log, np.zeros(len(self._log), dtype=np.int64)])
        self._log[end] = node
        self._log_len = end + 1

    def _trim(self) -> None:
        """Drop the log entries every class has seen (a long simulation must not grow it forever)."""
        end = self._log_len
        for cache in self._classes.values():
            if end - cache.seen > self._n:
                cache.seen = -1  # it re-scores every node anyway
        low = min((c.seen for c in self._classes.values() if c.seen >= 0), default=end)
        self._log[: end - low] = self._log[low:end].copy()
        self._log_len = end - low
        self._log_base += low
        for cache in self._classes.values():
            if cache.seen >= 0:
                cache.seen -= low

    def _summarise(self, nodes: np.ndarray) -> None:
        gpu = self.state.gpu[nodes]
        self._free[nodes] = np.maximum(gpu, 0).sum(axis=1)
        self._feat[nodes, 0] = self.state.cpu[nodes]
        self._feat[nodes, 1] = self.state.memory[nodes]
        self._feat[nodes, 2] = (gpu >= MILLI).sum(axis=1)
        self._feat[nodes, 3] = np.maximum(gpu, 0).max(axis=1) if gpu.shape[1] else 0
        # Python copies for the scalar path (list reads cost a tenth of numpy item reads)
        self._py_cpu: list[int] = self._feat[:, 0].tolist()
        self._py_memory: list[int] = self._feat[:, 1].tolist()
        self._py_whole: list[int] = self._feat[:, 2].tolist()
        self._py_largest: list[int] = self._feat[:, 3].tolist()
        self._py_free: list[int] = self._free.tolist()

    def _tag(self, p: Placement, sign: int) -> None:
        j = self.problem.job_index.get(p.job)
        if j is None:
            return
        spec = self.problem.jobs[j]
        tag = spec.gpus if spec.gpus else (0 if spec.gpu_milli else -1)
        if tag >= 0:
            self._tags[self.problem.node_index[p.node], tag] += sign

    # Job classes ----------------------------------------------------------------------------
    def _cache(self, job: int) -> _ClassCache:
        cache = self._class_of[job]
        if cache is not None:
            return cache
        s = self.problem.jobs[job]
        selector = s.node_selector
        key = (
            s.cpu,
            s.memory,
            s.gpus,
            s.gpu_milli,
            s.gpu_memory,
            s.gpu_models if s.gpus or s.gpu_milli else frozenset(),
            tuple(sorted(selector.items())) if selector else (),
        )
        cache = self._classes.get(key)
        if cache is None:
            cache = self._new_class(job)
            self._classes[key] = cache
        self._class_of[job] = cache
        return cache

    def _new_class(self, job: int) -> _ClassCache:
        s, n = self.problem.jobs[job], self._n
        allowed = self.problem.allowed_nodes(job)
        cache = _ClassCache(
            job=JobView(s.cpu, s.memory, s.gpus, s.gpu_milli, s.gpu_memory),
            allowed=allowed,
            everywhere=bool(allowed.all()),
            need=np.array([s.cpu, s.memory, s.gpus, s.gpu_milli], dtype=np.int64),
            score=np.full(n, -np.inf),
            share_gpu=np.full(n, NONE, dtype=np.int64),
            scalar=self.rule.scalar is not None and self._states is None and not s.gpu_memory,
            state_scalar=self.rule.state_scalar is not None and self._frag is not None and not s.gpu_memory,
        )
        if self._states is not None:
            cache.allowed_static = allowed[self._states.group_node]
            cache.memo_score = np.full(self._states.capacity, _UNKNOWN, dtype=np.float32)
            cache.memo_slot = np.full(self._states.capacity, NONE, dtype=np.int16)
        return cache

    def _current(self, job: int) -> _ClassCache:
        """The class of ``job`` with its row of scores current."""
        cache = self._class_of[job] or self._cache(job)
        end = self._log_len
        seen = cache.seen
        if seen == end:
            return cache
        cache.seen = end
        if seen < 0:
            stale = self._every
        else:
            # The nodes changed since the class last looked, each once, less those it could not use
            # then and that got nothing back since (they still cannot take it).
            since = self._log_base + seen
            if end - seen <= SCALAR_NODES and cache.scalar:
                self._score_scalar(cache, self._log[seen:end].tolist(), since)
                return cache
            if end - seen <= SMALL_LOG:
                usable = cache.score.item
                if self._last_freed >= since:
                    freed = self._freed.item
                    todo = [i for i in set(self._log[seen:end].tolist()) if usable(i) > _NINF or freed(i) >= since]
                else:
                    todo = [i for i in set(self._log[seen:end].tolist()) if usable(i) > _NINF]
                if cache.scalar and len(todo) <= SCALAR_NODES:
                    self._score_scalar(cache, todo)
                    return cache
                stale = np.array(todo, dtype=np.int64)
            else:
                if end - seen > self._n:
                    stale = self._every
                elif (end - seen) * 8 < self._n:
                    stale = np.sort(self._log[seen:end])
                    stale = stale[np.concatenate(([True], stale[1:] != stale[:-1]))]
                else:
                    flag = self._flag
                    flag[self._log[seen:end]] = True
                    stale = flag.nonzero()[0]
                    flag[stale] = False
                keep = cache.score.take(stale) > -np.inf
                if self._last_freed >= since:
                    keep |= self._freed.take(stale) >= since
                stale = stale[keep]
                if cache.scalar and len(stale) <= SCALAR_NODES:
                    self._score_scalar(cache, stale.tolist())
                    return cache
        if not len(stale):
            return cache
        if self._states is not None:
            self._score_states(cache, stale)
        else:
            self._score_nodes(cache, stale)
        return cache

    def _slots_ok(self, job: JobView, nodes: np.ndarray) -> np.ndarray:
        ok: np.ndarray = self.state.gpu[nodes] >= job.per_gpu
        if job.gpu_memory:
            ok &= self.state.gpu_mem[nodes] >= job.gpu_memory
        return ok

    # Scoring -----------------------------------------------------------------------------------
    def _score_nodes(self, cache: _ClassCache, nodes: np.ndarray) -> None:
        """Score one replica of the class on ``nodes`` in one vectorised rule call."""
        job = cache.job
        # all four of free cpu, memory, fully free GPUs, largest free share reach the need: the
        # (m, 4) bool rows read as one 4-byte word each (cheaper than a reduction over 4 columns)
        fit = (self._feat.take(nodes, axis=0) >= cache.need).view(np.uint32).ravel() == _ALL_FOUR
        if not cache.everywhere:
            fit &= cache.allowed.take(nodes)
        if job.gpu_memory and job.gpus_used:
            fit &= self._slots_ok(job, nodes).sum(axis=1) >= job.gpus_used
        row = cache.score
        if np.count_nonzero(fit) < len(nodes):
            row[nodes] = -np.inf  # the fitting ones are overwritten below
            nodes = nodes[fit]
            if not len(nodes):
                return
        if self.rule.randomized and not job.share:
            row[nodes] = self._key.take(nodes)
            return
        gpu = ok = None
        if job.share:
            gpu = self.state.gpu.take(nodes, axis=0)
            ok = gpu >= job.share
            if job.gpu_memory:
                ok &= self.state.gpu_mem.take(nodes, axis=0) >= job.gpu_memory
        score, share_gpu = self.rule.score(_Batch(self._nodes, nodes, ok, gpu=gpu), job, self.context)  # type: ignore[arg-type]
        row[nodes] = score + self._key.take(nodes) if self._fold else score
        if job.share:
            cache.share_gpu[nodes] = share_gpu

    def _score_scalar(self, cache: _ClassCache, nodes: Iterable[int], since: int | None = None) -> None:
        """:meth:`_score_nodes` for a few nodes, one by one with the rule's scalar twin.

        With ``since`` (an absolute log position), ``nodes`` are log entries: each node is scored
        once, and not at all where the class could not use it and it got nothing back since.
        """
        if since is not None:
            usable, freed, done = cache.score.item, self._freed.item, set()
            check = self._last_freed >= since
            todo = []
            for node in nodes:
                if node not in done:
                    done.add(node)
                    if usable(node) > _NINF or (check and freed(node) >= since):
                        todo.append(node)
            nodes = todo
        scalar = self.rule.scalar
        assert scalar is not None
        job, ctx, one = cache.job, self.context, self._scalar
        score, share_gpu, allowed = cache.score, cache.share_gpu, None if cache.everywhere else cache.allowed
        cpu, memory, free, whole, largest = (
            self._py_cpu,
            self._py_memory,
            self._py_free,
            self._py_whole,
            self._py_largest,
        )
        need_cpu, need_memory, gpus, share = job.cpu, job.memory, job.gpus, job.share
        rows = share or self.rule.uses_slots
        tags = self.rule.uses_tags
        gpu = self.state.gpu
        keys = self._py_key if self._fold else self._py_zero
        for node in nodes:
            if (
                cpu[node] < need_cpu
                or memory[node] < need_memory
                or whole[node] < gpus
                or largest[node] < share
                or (allowed is not None and not allowed[node])
            ):
                score[node] = -np.inf
                continue
            one.cpu, one.free, one.gpus = cpu[node], free[node], self._node_gpus[node]
            if rows:
                one.gpu = gpu[node].tolist()
                if share:
                    one.ok = [v >= share for v in one.gpu]
            if tags:
                one.tags = self._tags[node].tolist()
            value, slot = scalar(one, job, ctx)
            score[node] = value + keys[node]
            if share:
                share_gpu[node] = slot

    # Costly rules: lazy scores per interned state -------------------------------------------
    def _score_states(self, cache: _ClassCache, nodes: np.ndarray) -> None:
        """Bring the class's scores of ``nodes`` up to date through their interned states."""
        states = self._states
        assert states is not None and cache.memo_score is not None and cache.memo_slot is not None
        if len(cache.memo_score) < states.capacity:
            grow = states.capacity - len(cache.memo_score)
            cache.memo_score = np.concatenate([cache.memo_score, np.full(grow, _UNKNOWN, dtype=np.float32)])
            cache.memo_slot = np.concatenate([cache.memo_slot, np.full(grow, NONE, dtype=np.int16)])
        sids = states.node_state.take(nodes)
        values = cache.memo_score.take(sids)
        unknown = np.isnan(values)
        if unknown.any():
            new = sids[unknown]
            if len(new) > 1:
                new = np.array(list(set(new.tolist())), dtype=np.int64) if len(new) < 64 else np.unique(new)
            self._score_new_states(cache, new)
            values = cache.memo_score.take(sids)
        cache.score[nodes] = values + self._key.take(nodes) if self._fold else values
        if cache.job.share:
            cache.share_gpu[nodes] = cache.memo_slot.take(sids)

    def _score_new_states(self, cache: _ClassCache, sids: np.ndarray) -> None:
        states = self._states
        assert states is not None and cache.memo_score is not None and cache.memo_slot is not None
        assert cache.allowed_static is not None
        job = cache.job
        if len(sids) <= SCALAR_STATES and cache.state_scalar:
            self._score_states_scalar(cache, sids.tolist())
            return
        fit = (states.feat.take(sids, axis=0) >= cache.need).view(np.uint32).ravel() == _ALL_FOUR
        if not cache.everywhere:
            fit &= cache.allowed_static.take(states.static.take(sids))
        if job.gpu_memory and job.gpus_used:
            ok = (states.gpu[sids] >= job.per_gpu) & (states.gpu_mem[sids] >= job.gpu_memory)
            fit &= ok.sum(axis=1) >= job.gpus_used
        good = sids
        if np.count_nonzero(fit) < len(sids):
            cache.memo_score[sids] = -np.inf  # the fitting ones are overwritten below
            good = sids[fit]
            if not len(good):
                return
        ok = gpu = None
        if job.share:
            gpu = states.gpu.take(good, axis=0)
            ok = gpu >= job.share
            if job.gpu_memory:
                ok &= states.gpu_mem.take(good, axis=0) >= job.gpu_memory
        if self._frag is not None:
            self._frag.update()
        score, share_gpu = self.rule.score(_Batch(states, good, ok, self._frag, gpu), job, self.context)  # type: ignore[arg-type]
        cache.memo_score[good] = score
        if job.share:
            cache.memo_slot[good] = share_gpu

    def _score_states_scalar(self, cache: _ClassCache, sids: list[int]) -> None:
        """:meth:`_score_new_states` for a few states, one by one with the rule's scalar twin."""
        states, frag = self._states, self._frag
        assert states is not None and frag is not None and cache.memo_score is not None
        assert cache.memo_slot is not None and cache.allowed_static is not None
        frag.update()
        scalar = self.rule.state_scalar
        assert scalar is not None
        job, ctx, one = cache.job, self.context, self._scalar
        need_cpu, need_memory, gpus, share = job.cpu, job.memory, job.gpus, job.share
        allowed = None if cache.everywhere else cache.allowed_static
        for sid in sids:
            cpu, memory, whole, largest = states.feat[sid].tolist()
            if (
                cpu < need_cpu
                or memory < need_memory
                or whole < gpus
                or largest < share
                or (allowed is not None and not allowed[states.static.item(sid)])
            ):
                cache.memo_score[sid] = -np.inf
                continue
            one.cpu, one.memory, one.free = cpu, memory, states.free.item(sid)
            one.model, one.gpu = states.model.item(sid), states.gpu[sid].tolist()
            if share:
                one.ok = [v >= share for v in one.gpu]
            one.count, one.usable = frag.count[sid].tolist(), frag.usable[sid].tolist()
            one.fragmentation = frag.value.item(sid)
            value, slot = scalar(one, job, ctx)
            cache.memo_score[sid] = value
            if share:
                cache.memo_slot[sid] = slot

    # Multi-replica helpers ------------------------------------------------------------------
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
            cache = self._current(job)
            if not cache.score[node] > -np.inf:  # pragma: no cover - room said they fit
                break
            placed.append(self._take(cache, job, node, replica))
        if len(placed) < (spec.min_replicas or spec.replicas):  # pragma: no cover - room said they fit
            self.release(placed)
            return None
        return tuple(placed)
