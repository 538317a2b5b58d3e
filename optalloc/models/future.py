"""The future value of free GPU capacity: admission control for callers who expect more demand.

An allocation that places every job that fits is right when the queue is all the demand there is.
When more demand is expected than the free capacity can hold (a loaded cluster deciding arrivals in
batches), a GPU-sharing job that opens a fresh GPU can cost more than it brings: a share of 810
milli-GPU leaves 190 that the job mix rarely fills, on a GPU a whole-GPU job would have used entirely.
Bid-price control (network revenue management; Talluri & van Ryzin) accepts a request only when it is
worth more than the expected future value of the capacity it takes. This module estimates that value
per GPU fill level and turns it into a linear objective term of the integer program.

The value function comes from the arc-flow LP of the forecast (Valerio de Carvalho's formulation, the
one ``formulation`` uses per node type, here for the whole cluster):

  levels   a = 0, q, 2q, ..., 1000 milli-GPU used on one GPU (q: the grid of the share sizes)
  y[a, s]  GPUs that receive a forecast item of size s at level a (s = 1000: a whole GPU)
  e[a]     GPUs whose final level is a
  maximise   sum_{a,s} s y[a, s]                       (milli-GPU the forecast places)
  subject to flow conservation at every level a:  g[a] + sum_s y[a - s, s] = sum_s y[a, s] + e[a],
             where g[a] is the number of GPUs at level a now,
             supply of each size: sum_a y[a, s] <= d[s],
             d[s] = forecast x (free milli-GPU) x (share of size s in the job mix's GPU demand) / s.

The dual of the conservation row at level a is the milli-GPU the forecast would still place on one
more GPU at level a; discounted (``DISCOUNT``), it is ``V[a]``, the future value of a GPU left there. The program then maximises
``allocated now + sum over GPUs of V[level after the allocation]``: a share s moves a GPU from level a
to a + s and is worth placing when ``s + V[a + s] - V[a] > 0``.

Two simplifications, both stated in docs/concepts.md: the LP pools all GPU models and ignores CPU and
memory (it values GPU capacity only), and it is applied only while the forecast whole-GPU demand would
use up the fully free GPUs. Otherwise fresh GPUs are not scarce and the LP's perfect share combinations
(an LP packs fractional items with hindsight) would hold back jobs nothing better replaces: then every
job that fits is placed, as without a forecast.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from functools import reduce

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from optalloc.core import MILLI, Allocation, ClusterState, FutureValue, Problem, Reason, Unplaced
from optalloc.core.future_value import HELD_BACK_DETAIL
from optalloc.models.decode import NOT_CHOSEN
from optalloc.models.formulation import Formulation

#: Finest grid of fill levels (milli-GPU); share sizes off the grid are rounded up to it.
MIN_STEP = 10

#: What a milli-GPU the forecast may place later is worth against one placed now. Below 1, so that a job
#: worth exactly the capacity it takes is placed (a forecast is uncertain; a job in hand is not).
DISCOUNT = 0.95


def future_value(problem: Problem, state: ClusterState, forecast: float) -> FutureValue | None:
    """The future value of GPU capacity in ``state``, if ``forecast`` x the free GPU capacity arrives.

    The job mix is ``problem``'s jobs (running and waiting). Returns None when the forecast is 0, when
    the mix has no GPU demand, or when the forecast whole-GPU demand would not use up the fully free
    GPUs (module docstring; :func:`admission_status` says which).
    """
    mix = _mix(problem, state, forecast)
    if mix is None or mix.whole < mix.fresh:
        return None
    step = max(MIN_STEP, reduce(math.gcd, mix.sizes, MILLI))
    levels = MILLI // step
    grid: Counter[int] = Counter()
    for s, c in mix.sizes.items():
        grid[-(-s // step)] += c
    supply = {s: mix.demand * c / mix.total for s, c in grid.items()}  # items of each size in the forecast
    slots = state.gpu >= 0
    used = MILLI - state.gpu[slots]
    now = np.bincount(np.clip(-(-used // step), 0, levels), minlength=levels + 1).astype(np.float64)
    values = DISCOUNT * _dual_values(now, supply, levels, step)
    return FutureValue(step, values, mix.demand, mix.whole, mix.fresh)


def admission_status(problem: Problem, state: ClusterState, forecast: float) -> str:
    """Whether admission control acts on ``problem`` in ``state`` with ``forecast``, and why not."""
    mix = _mix(problem, state, forecast)
    if forecast <= 0:
        return "off"
    if mix is None:
        return "inactive: no GPU demand in the job mix, or no free GPU"
    if mix.whole < mix.fresh:
        return (
            f"inactive: the forecast asks for {mix.whole:,.1f} whole GPUs, fewer than the {mix.fresh:,} fully "
            "free ones, so no job is held back (a larger forecast, or a fuller cluster, turns it on)"
        )
    return f"active: {mix.whole:,.1f} whole GPUs forecast for {mix.fresh:,} fully free"


@dataclass(frozen=True)
class _Mix:
    sizes: Counter[int]  # milli-GPU per item -> items in the job mix (whole GPUs are items of 1000)
    total: int  # milli-GPU of the mix
    demand: float  # milli-GPU the forecast expects
    whole: float  # of which as whole GPUs, in GPUs
    fresh: int  # fully free GPUs now


def _mix(problem: Problem, state: ClusterState, forecast: float) -> _Mix | None:
    if forecast <= 0:
        return None
    sizes: Counter[int] = Counter()
    for job, replicas in zip(problem.jobs, problem.job_replicas.tolist(), strict=True):
        if job.gpu_milli:
            sizes[job.gpu_milli] += replicas
        elif job.gpus:
            sizes[MILLI] += job.gpus * replicas
    total = sum(s * c for s, c in sizes.items())
    slots = state.gpu >= 0
    if not total or not slots.any():
        return None
    demand = forecast * float(np.where(slots, state.gpu, 0).sum())
    whole = demand * sizes[MILLI] / total  # GPUs the forecast asks for whole (its whole-GPU milli / 1000)
    return _Mix(sizes, total, demand, whole, int((state.gpu == MILLI).sum()))


def _dual_values(now: np.ndarray, supply: dict[int, float], levels: int, step: int) -> np.ndarray:
    """Duals of the arc-flow LP's conservation rows (module docstring), in milli-GPU per GPU."""
    items = sorted(supply)
    arcs = [(a, s) for s in items for a in range(levels - s + 1)]
    n_arcs = len(arcs)
    # Columns: y[a, s] for every arc, then e[a] for every level.
    a_idx = np.array([a for a, _ in arcs], dtype=np.int64)
    s_idx = np.array([s for _, s in arcs], dtype=np.int64)
    cols = np.arange(n_arcs)
    # Conservation at level a: (arcs into a) - (arcs out of a) - e[a] = -now[a].
    rows = np.concatenate([a_idx + s_idx, a_idx, np.arange(levels + 1)])
    data = np.concatenate([np.ones(n_arcs), -np.ones(n_arcs), -np.ones(levels + 1)])
    columns = np.concatenate([cols, cols, n_arcs + np.arange(levels + 1)])
    a_eq = coo_matrix((data, (rows, columns)), shape=(levels + 1, n_arcs + levels + 1)).tocsr()
    # Supply of each size.
    position = {s: i for i, s in enumerate(items)}
    a_ub = coo_matrix(
        (np.ones(n_arcs), (np.array([position[s] for s in s_idx.tolist()]), cols)),
        shape=(len(items), n_arcs + levels + 1),
    ).tocsr()
    b_ub = np.array([supply[s] for s in items])
    cost = np.zeros(n_arcs + levels + 1)
    cost[:n_arcs] = -(s_idx * step).astype(np.float64)
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=-now, bounds=(0, None), method="highs")
    if res.status != 0 or res.eqlin is None:
        return np.zeros(levels + 1)
    # linprog minimises -(placed milli); one more GPU at level a lowers b_eq[a] by one, so the placed
    # milli grows by the marginal of that row.
    values = np.asarray(res.eqlin.marginals, dtype=np.float64)
    return np.maximum(values, 0.0)


TERM = "future"


def add_future(form: Formulation, fv: FutureValue) -> None:
    """Add ``sum over GPUs of V[level after the allocation]`` to ``form``'s program, as term ``future``.

    Per node type t, up to a constant: ``sum_a V[a] e[t, a]`` over the share fill levels, minus
    ``V[0]`` per fully free GPU the allocation takes (``u[t]`` opened for sharing, and the whole GPUs
    of ``x[k, t]``). GPUs the program does not touch keep their value: a constant, left out.
    """
    comp = form.compression
    fresh = float(fv.values[0])
    for (k, _t), var in form.x.items():
        c = comp.classes[k]
        if c.gpus:
            coef = round(fresh * c.gpus * form.unit(k))
            if coef:
                form.program.add_term(TERM, var, -coef)
    for flow in form.flows.values():
        if round(fresh):
            form.program.add_term(TERM, flow.fresh, -round(fresh))
        for level, var in flow.ends.items():
            coef = round(float(fv.at(np.array([level]))[0]))
            if coef:
                form.program.add_term(TERM, var, coef)
    form.weights[TERM] = 1


def held_back(problem: Problem, allocation: Allocation) -> Allocation:
    """``allocation`` with the jobs the program left out although one replica still fits marked
    :attr:`Reason.HELD_BACK` (admission control chose to keep their capacity for the forecast)."""
    state = ClusterState.of(problem, allocation)
    out = []
    for u in allocation.unplaced:
        j = problem.job_index[u.job]
        job = problem.jobs[j]
        chosen_out = u.reason == Reason.INSUFFICIENT_CAPACITY and u.detail == NOT_CHOSEN
        if chosen_out and job.replicas == 1 and bool(state.fits(j).any()):
            u = Unplaced(u.job, Reason.HELD_BACK, HELD_BACK_DETAIL)
        out.append(u)
    return allocation.replace(unplaced=tuple(out))
