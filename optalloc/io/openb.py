"""Readers for the Alibaba "openb" GPU traces (cluster-trace-gpu-v2023, the FGD paper, ATC'23).

Node list ``sn,cpu_milli,memory_mib,gpu,model`` -> :class:`Node` (name = ``sn``, cpu milli-cores,
memory MiB, ``gpu`` GPUs of model ``model``; an empty model is None).

Pod list ``name,cpu_milli,memory_mib,num_gpu,gpu_milli[,gpu_spec,qos,pod_phase,creation_time,
deletion_time,scheduled_time]`` -> :class:`Job` (one replica each):

- ``num_gpu > 1``: ``gpus = num_gpu`` whole GPUs (``gpu_milli`` must be 1000);
- ``num_gpu == 1``: ``gpus = 1`` when ``gpu_milli == 1000``, else a share ``gpu_milli`` (1..999) of one GPU;
- ``num_gpu == 0``: a CPU-only pod (``gpu_milli`` must be 0);
- ``gpu_spec`` ``A|B`` -> ``gpu_models = {A, B}`` (empty = any model);
- ``arrival = creation_time``; ``duration = deletion_time - creation_time`` when both are present
  (seconds). ``qos``, ``pod_phase`` and ``scheduled_time`` are not used.

Files with only the five resource columns (``openb_pod_list_multigpu50.csv``) read the same, with
arrival 0 and no duration. Every bad cell raises :class:`ProblemError` naming the file, the line
(header = line 1) and the column.
"""

from __future__ import annotations

from optalloc.core import LIMITS, MILLI, Job, Node, Problem, ProblemError
from optalloc.io._table import StrPath, Table, read_table

NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
POD_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")
POD_OPTIONAL = ("gpu_spec", "qos", "pod_phase", "creation_time", "deletion_time", "scheduled_time")

__all__ = ["NODE_COLUMNS", "POD_COLUMNS", "read_nodes", "read_openb", "read_pods"]


def read_nodes(path: StrPath, *, gpu_only: bool = False) -> list[Node]:
    """Nodes of an openb node list; ``gpu_only`` keeps the nodes with ``gpu > 0`` (the FGD setting)."""
    table = read_table(path, required=NODE_COLUMNS[:4], optional=NODE_COLUMNS[4:], max_rows=LIMITS.nodes)
    i_sn, i_cpu, i_mem, i_gpu = (table.index[c] for c in NODE_COLUMNS[:4])
    i_model = table.index.get("model")
    nodes: list[Node] = []
    seen: dict[str, int] = {}
    for line, row in table.rows:
        gpus = table.integer(line, "gpu", row[i_gpu])
        if gpu_only and gpus == 0:
            continue
        name = row[i_sn].strip()
        _check_unique(table, seen, line, "sn", name)
        model = row[i_model].strip() if i_model is not None else ""
        try:
            node = Node(
                name,
                cpu=table.integer(line, "cpu_milli", row[i_cpu]),
                memory=table.integer(line, "memory_mib", row[i_mem]),
                gpus=gpus,
                gpu_model=model or None,
            )
        except ProblemError as err:
            raise table.wrap(line, _renamed(err, {"name": "sn", "gpu_model": "model"})) from None
        nodes.append(node)
    return nodes


def read_pods(path: StrPath) -> list[Job]:
    """Jobs of an openb pod list (one replica per pod), in file order."""
    return _read_pods(path)[0]


def read_openb(nodes_path: StrPath, pods_path: StrPath, *, gpu_nodes_only: bool = False) -> Problem:
    """A problem from an openb node list and pod list.

    ``gpu_nodes_only`` drops the CPU-only nodes (the 1213-node cluster of the FGD experiments).
    A ``gpu_spec`` naming a model no node of the list has is an error naming the pod's line.
    """
    nodes = read_nodes(nodes_path, gpu_only=gpu_nodes_only)
    jobs, table, lines = _read_pods(pods_path)
    models = {n.gpu_model for n in nodes if n.gpu_model is not None and n.gpus}
    for job, line in zip(jobs, lines, strict=True):
        unknown = sorted(job.gpu_models - models)
        if unknown:
            known = ", ".join(sorted(models)) or "none"
            raise table.error(line, "gpu_spec", unknown[0], f"is not a GPU model of the node list (known: {known})")
    return Problem(tuple(nodes), tuple(jobs))


# Internals -----------------------------------------------------------------------------------
def _read_pods(path: StrPath) -> tuple[list[Job], Table, list[int]]:
    table = read_table(path, required=POD_COLUMNS, optional=POD_OPTIONAL)
    i_name, i_cpu, i_mem, i_num, i_milli = (table.index[c] for c in POD_COLUMNS)
    i_spec = table.index.get("gpu_spec")
    i_create = table.index.get("creation_time")
    i_delete = table.index.get("deletion_time")
    jobs: list[Job] = []
    lines: list[int] = []
    seen: dict[str, int] = {}
    integer = table.integer
    for line, row in table.rows:
        name = row[i_name].strip()
        _check_unique(table, seen, line, "name", name)
        cpu = integer(line, "cpu_milli", row[i_cpu])
        memory = integer(line, "memory_mib", row[i_mem])
        num_gpu = integer(line, "num_gpu", row[i_num])
        milli = integer(line, "gpu_milli", row[i_milli])
        gpus, share = _gpu_request(table, line, num_gpu, milli)
        spec = row[i_spec].strip() if i_spec is not None else ""
        models = frozenset(m.strip() for m in spec.split("|") if m.strip()) if spec else frozenset()
        created = table.optional_number(line, "creation_time", row[i_create]) if i_create is not None else None
        deleted = table.optional_number(line, "deletion_time", row[i_delete]) if i_delete is not None else None
        duration = None
        if created is not None and deleted is not None:
            if deleted < created:
                raise table.error(line, "deletion_time", deleted, f"is before creation_time={created:g}")
            duration = deleted - created
        try:
            job = Job(
                name,
                cpu=cpu,
                memory=memory,
                gpus=gpus,
                gpu_milli=share,
                gpu_models=models,
                arrival=created or 0.0,
                duration=duration,
            )
        except ProblemError as err:
            raise table.wrap(line, _renamed(err, {"gpu_models": "gpu_spec"})) from None
        jobs.append(job)
        lines.append(line)
    return jobs, table, lines


def _gpu_request(table: Table, line: int, num_gpu: int, milli: int) -> tuple[int, int]:
    """``(gpus, gpu_milli)`` of a Job from the pod's ``num_gpu`` and ``gpu_milli``."""
    if num_gpu == 0:
        if milli:
            raise table.error(line, "gpu_milli", milli, "is not 0 for a pod with num_gpu=0")
        return 0, 0
    if num_gpu == 1:
        if milli == 0 or milli > MILLI:
            raise table.error(line, "gpu_milli", milli, "is not between 1 and 1000 for a pod with num_gpu=1")
        return (1, 0) if milli == MILLI else (0, milli)
    if milli != MILLI:
        raise table.error(
            line, "gpu_milli", milli, f"is not 1000 for a pod with num_gpu={num_gpu} (only one GPU can be shared)"
        )
    return num_gpu, 0


def _check_unique(table: Table, seen: dict[str, int], line: int, column: str, name: str) -> None:
    if name in seen:
        raise table.error(line, column, name, f"duplicates line {seen[name]}")
    seen[name] = line


def _renamed(err: ProblemError, columns: dict[str, str]) -> ProblemError:
    """The core's field name replaced by the trace's column name (``gpu_models`` -> ``gpu_spec``)."""
    head, sep, rest = err.field.partition("[")
    if head in columns:
        return ProblemError(columns[head] + sep + rest, err.value, err.reason)
    return err
