"""Integer programs for allocation: the compressed formulation and its backends.

``compress`` groups nodes into types and jobs into classes; ``build`` writes the program once as
data; ``cpsat``, ``milp`` and ``lp_bound`` solve it; ``decode`` turns a solution into placements.
``solve_exact(problem, options, backend=...)`` does all of it.
"""

from optalloc.models.classes import Compression, JobClass, NodeType, compress
from optalloc.models.exact import solve_exact
from optalloc.models.formulation import Formulation, build, encode

__all__ = ["Compression", "Formulation", "JobClass", "NodeType", "build", "compress", "encode", "solve_exact"]
