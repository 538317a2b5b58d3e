"""Straightforward models of the allocation problem, as a team would hand-write them: the baselines
that optalloc's compressed program is measured against (benchmarks only, not part of the package).

One binary x[j, n] per (job, node) where the job may run; for every GPU g of a node, a binary h[n, g]
"GPU g is shared", and for every sharing job a binary y[j, n, g] per GPU. Constraints: each job at most
once; per node CPU, memory and whole GPUs (whole-GPU jobs + shared GPUs <= GPUs); per shared GPU the
shares <= 1000. Objective: the same primary value as optalloc's (milli-GPU, CPU-only pods worth
``cpu_only_value``). Single-replica jobs only (the openb pods are).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np

from optalloc import Problem


@dataclass
class NaiveRun:
    model: str
    variables: int
    build_time: float
    solve_time: float
    objective: float | None
    bound: float | None
    status: str
    first_solution_time: float | None = None


def _pairs(problem: Problem) -> list[tuple[int, np.ndarray]]:
    return [(j, np.flatnonzero(problem.fits_empty(j))) for j in range(len(problem.jobs))]


def naive_cpsat(problem: Problem, time_limit: float, workers: int = 2) -> NaiveRun:
    from ortools.sat.python import cp_model

    start = time.perf_counter()
    m = cp_model.CpModel()
    values = problem.replica_value
    x: dict[tuple[int, int], cp_model.IntVar] = {}
    y: dict[tuple[int, int, int], cp_model.IntVar] = {}
    per_node: dict[int, list[int]] = {}
    for j, nodes in _pairs(problem):
        for n in nodes:
            x[(j, int(n))] = m.new_bool_var("")
            per_node.setdefault(int(n), []).append(j)
        m.add_at_most_one(x[(j, int(n))] for n in nodes)
    for n, js in per_node.items():
        node = problem.nodes[n]
        m.add(sum(problem.jobs[j].cpu * x[(j, n)] for j in js) <= node.cpu)
        m.add(sum(problem.jobs[j].memory * x[(j, n)] for j in js) <= node.memory)
        sharing = [j for j in js if problem.jobs[j].gpu_milli]
        h = [m.new_bool_var("") for _ in range(node.gpus)] if sharing else []
        m.add(sum(problem.jobs[j].gpus * x[(j, n)] for j in js) + sum(h) <= node.gpus)
        for g in range(len(h)):
            for j in sharing:
                y[(j, n, g)] = m.new_bool_var("")
                m.add_implication(y[(j, n, g)], h[g])
            m.add(sum(problem.jobs[j].gpu_milli * y[(j, n, g)] for j in sharing) <= 1000)
        for j in sharing:
            m.add(sum(y[(j, n, g)] for g in range(len(h))) == x[(j, n)])
    m.maximize(sum(int(values[j]) * v for (j, _), v in x.items()))
    build = time.perf_counter() - start
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit
    solver.parameters.num_workers = workers

    class First(cp_model.CpSolverSolutionCallback):
        def __init__(self) -> None:
            super().__init__()
            self.first: float | None = None

        def on_solution_callback(self) -> None:
            if self.first is None:
                self.first = self.wall_time

    cb = First()
    t = time.perf_counter()
    code = solver.solve(m, cb)
    found = code in (cp_model.OPTIMAL, cp_model.FEASIBLE)
    return NaiveRun(
        "naive CP-SAT",
        len(x) + len(y),
        build,
        time.perf_counter() - t,
        solver.objective_value if found else None,
        solver.best_objective_bound if found else None,
        solver.status_name(code),
        cb.first,
    )


def naive_pulp(problem: Problem, time_limit: float, workers: int = 2) -> NaiveRun:
    import pulp

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        m = pulp.LpProblem("naive", pulp.LpMaximize)
        values = problem.replica_value
        x: dict[tuple[int, int], pulp.LpVariable] = {}
        count = 0
        per_node: dict[int, list[int]] = {}
        for j, nodes in _pairs(problem):
            for n in nodes:
                x[(j, int(n))] = m.add_variable(f"x{j}_{n}", cat=pulp.LpBinary)
                per_node.setdefault(int(n), []).append(j)
            m += pulp.lpSum(x[(j, int(n))] for n in nodes) <= 1
        count = len(x)
        for n, js in per_node.items():
            node = problem.nodes[n]
            m += pulp.lpSum(problem.jobs[j].cpu * x[(j, n)] for j in js) <= node.cpu
            m += pulp.lpSum(problem.jobs[j].memory * x[(j, n)] for j in js) <= node.memory
            sharing = [j for j in js if problem.jobs[j].gpu_milli]
            h = [m.add_variable(f"h{n}_{g}", cat=pulp.LpBinary) for g in range(node.gpus)] if sharing else []
            count += len(h)
            m += pulp.lpSum(problem.jobs[j].gpus * x[(j, n)] for j in js) + pulp.lpSum(h) <= node.gpus
            for g in range(len(h)):
                ys = {j: m.add_variable(f"y{j}_{n}_{g}", cat=pulp.LpBinary) for j in sharing}
                count += len(ys)
                m += pulp.lpSum(problem.jobs[j].gpu_milli * v for j, v in ys.items()) <= 1000 * h[g]
                for j, v in ys.items():
                    x.setdefault((j, n, g), v)  # type: ignore[arg-type]
            for j in sharing:
                m += pulp.lpSum(x[(j, n, g)] for g in range(len(h))) == x[(j, n)]  # type: ignore[index]
        m += pulp.lpSum(int(values[k[0]]) * v for k, v in x.items() if len(k) == 2)
        build = time.perf_counter() - start
        t = time.perf_counter()
        m.solve(pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit, threads=workers))
    solved = m.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible)
    return NaiveRun(
        "naive PuLP/CBC",
        count,
        build,
        time.perf_counter() - t,
        pulp.value(m.objective) if solved else None,
        None,
        # CBC reports status "Optimal" when its time limit stops it with a solution; sol_status tells
        "Optimal" if m.sol_status == pulp.LpSolutionOptimal else ("FEASIBLE (time limit)" if solved else "no solution"),
    )
