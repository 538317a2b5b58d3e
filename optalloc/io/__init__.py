"""File formats, trace readers and synthetic workloads (docs/formats.md describes every format).

- Problem and allocation files, JSON or YAML by suffix: :func:`read_problem`, :func:`write_problem`,
  :func:`read_allocation`, :func:`write_allocation` (and the ``*_to_dict`` / ``*_from_dict`` pairs).
- Generic CSV import: :func:`read_nodes_csv`, :func:`read_jobs_csv`.
- Trace readers: :mod:`optalloc.io.openb` (Alibaba openb, ATC'23), :mod:`optalloc.io.pai` (Alibaba
  PAI machine list, NSDI'22), :mod:`optalloc.io.gavel` (Gavel / Philly, OSDI'20).
- Synthetic workloads and the FGD protocol: :mod:`optalloc.io.synthetic`.
- Kubernetes-style quantities: :mod:`optalloc.io.units`.
"""

from optalloc.io import gavel, openb, pai, synthetic, units
from optalloc.io.allocation_file import allocation_from_dict, allocation_to_dict, read_allocation, write_allocation
from optalloc.io.csv_import import read_jobs_csv, read_nodes_csv
from optalloc.io.gavel import read_trace as read_gavel_trace
from optalloc.io.openb import read_openb
from optalloc.io.problem_file import (
    job_from_dict,
    node_from_dict,
    problem_from_dict,
    problem_to_dict,
    read_problem,
    write_problem,
)
from optalloc.io.synthetic import demo_problem, inflate, openb_like, philly_like, shuffled

__all__ = [
    "allocation_from_dict",
    "allocation_to_dict",
    "demo_problem",
    "gavel",
    "inflate",
    "job_from_dict",
    "node_from_dict",
    "openb",
    "openb_like",
    "pai",
    "philly_like",
    "problem_from_dict",
    "problem_to_dict",
    "read_allocation",
    "read_gavel_trace",
    "read_jobs_csv",
    "read_nodes_csv",
    "read_openb",
    "read_problem",
    "shuffled",
    "synthetic",
    "units",
    "write_allocation",
    "write_problem",
]
