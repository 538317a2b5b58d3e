"""Reader for the Alibaba PAI machine list (cluster-trace-gpu-v2020, ``pai_machine_spec.csv``).

The file has no header line; its columns are ``machine,gpu_type,cap_cpu,cap_mem,cap_gpu`` (also in
``pai_machine_spec.header``). Mapping to :class:`Node`: name = ``machine``; cpu = ``cap_cpu`` cores x 1000
(milli-cores); memory = ``cap_mem`` GB x 1024 (MiB, GB read as GiB as the trace's 384/512 values
suggest); gpus = ``cap_gpu``; gpu_model = ``gpu_type``, except ``CPU`` which means no GPU. ``MISC`` is
kept as a model name (the trace's own label for its other GPUs).
"""

from __future__ import annotations

from pathlib import Path

from optalloc.core import LIMITS, Node, ProblemError
from optalloc.io._table import StrPath, read_table
from optalloc.io._text import read_text

COLUMNS = ("machine", "gpu_type", "cap_cpu", "cap_mem", "cap_gpu")
MIB_PER_GB = 1024
NO_GPU = "CPU"

__all__ = ["COLUMNS", "read_machines"]


def read_machines(path: StrPath, header_path: StrPath | None = None) -> list[Node]:
    """Nodes of ``pai_machine_spec.csv``; ``header_path`` names the column order (default :data:`COLUMNS`).

    A first line equal to the header is skipped, so a copy with a header line reads too.
    """
    names: tuple[str, ...] = COLUMNS
    if header_path is not None:
        text = read_text(header_path).strip()
        names = tuple(c.strip() for c in text.splitlines()[0].split(",")) if text else ()
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            raise ProblemError(
                Path(header_path).name, missing[0], f"column is missing (the header has: {', '.join(names)})"
            )
    table = read_table(path, required=COLUMNS, fieldnames=names, max_rows=LIMITS.nodes)
    i_name, i_type, i_cpu, i_mem, i_gpu = (table.index[c] for c in COLUMNS)
    nodes: list[Node] = []
    seen: dict[str, int] = {}
    for line, row in table.rows:
        if line == 1 and tuple(c.strip() for c in row) == names:
            continue  # a header line after all
        name = row[i_name].strip()
        if name in seen:
            raise table.error(line, "machine", name, f"duplicates line {seen[name]}")
        seen[name] = line
        cores = table.number(line, "cap_cpu", row[i_cpu], minimum=0)
        milli = cores * 1000
        if not float(milli).is_integer():
            raise table.error(line, "cap_cpu", row[i_cpu], "is not a whole number of milli-cores")
        gb = table.number(line, "cap_mem", row[i_mem], minimum=0)
        mib = gb * MIB_PER_GB
        if not float(mib).is_integer():
            raise table.error(line, "cap_mem", row[i_mem], "is not a whole number of MiB")
        gpus = table.integer(line, "cap_gpu", row[i_gpu])
        gpu_type = row[i_type].strip()
        if not gpu_type:
            raise table.error(line, "gpu_type", gpu_type, f"is empty (a GPU model, or {NO_GPU} for none)")
        if gpu_type == NO_GPU and gpus:
            raise table.error(line, "cap_gpu", gpus, f"is not 0 on a {NO_GPU} machine")
        try:
            nodes.append(
                Node(
                    name, cpu=int(milli), memory=int(mib), gpus=gpus, gpu_model=None if gpu_type == NO_GPU else gpu_type
                )
            )
        except ProblemError as err:
            raise table.wrap(line, err) from None
    return nodes
