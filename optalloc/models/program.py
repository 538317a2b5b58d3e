"""A linear integer program as plain data: what every backend (CP-SAT, PuLP, scipy) turns into its own model.

All variables are integers with finite bounds; every constraint is a row ``lo <= a . x <= hi``; the
objective is maximised. Objective terms are kept apart (``terms``) so that the lexicographic mode can
optimise them in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

INF = np.iinfo(np.int64).max // 4


@dataclass
class Program:
    """Builder and container of the program ``max c.x  s.t.  lo <= A x <= hi,  lb <= x <= ub, x integer``."""

    names: list[str] = field(default_factory=list)
    lb: list[int] = field(default_factory=list)
    ub: list[int] = field(default_factory=list)
    row_lo: list[int] = field(default_factory=list)
    row_hi: list[int] = field(default_factory=list)
    row_names: list[str] = field(default_factory=list)
    _rows: list[int] = field(default_factory=list)
    _cols: list[int] = field(default_factory=list)
    _vals: list[int] = field(default_factory=list)
    # Objective terms, each a sparse {var: coefficient}, combined with weights into the objective.
    terms: dict[str, dict[int, int]] = field(default_factory=dict)
    offsets: dict[str, int] = field(default_factory=dict)

    # Building ------------------------------------------------------------------------------
    def var(self, name: str, lb: int, ub: int) -> int:
        if ub < lb:
            ub = lb
        self.names.append(name)
        self.lb.append(int(lb))
        self.ub.append(int(ub))
        return len(self.names) - 1

    def row(self, name: str, cols: list[int], coefs: list[int], lo: int = -INF, hi: int = INF) -> int:
        r = len(self.row_lo)
        self.row_names.append(name)
        self.row_lo.append(int(lo))
        self.row_hi.append(int(hi))
        self._rows.extend([r] * len(cols))
        self._cols.extend(int(c) for c in cols)
        self._vals.extend(int(v) for v in coefs)
        return r

    def add_term(self, term: str, col: int, coef: int) -> None:
        if coef:
            bucket = self.terms.setdefault(term, {})
            bucket[col] = bucket.get(col, 0) + int(coef)

    # Views ---------------------------------------------------------------------------------
    @property
    def num_vars(self) -> int:
        return len(self.names)

    @property
    def num_rows(self) -> int:
        return len(self.row_lo)

    def matrix(self) -> sparse.csr_matrix:
        return sparse.csr_matrix(
            (np.asarray(self._vals, dtype=np.float64), (np.asarray(self._rows), np.asarray(self._cols))),
            shape=(self.num_rows, self.num_vars),
        )

    def objective(self, weights: dict[str, int]) -> tuple[np.ndarray, int]:
        """Dense objective vector and constant for the weighted sum of terms."""
        c = np.zeros(self.num_vars, dtype=np.int64)
        offset = 0
        for term, w in weights.items():
            if not w:
                continue
            for col, coef in self.terms.get(term, {}).items():
                c[col] += w * coef
            offset += w * self.offsets.get(term, 0)
        return c, offset

    def value(self, x: np.ndarray, weights: dict[str, int]) -> int:
        c, offset = self.objective(weights)
        return int(c @ np.asarray(x, dtype=np.int64)) + offset

    def check(self, x: np.ndarray) -> list[str]:
        """Rows and bounds that ``x`` violates (to validate hints and decoded solutions)."""
        x = np.asarray(x, dtype=np.int64)
        bad = [self.names[i] for i in np.flatnonzero((x < np.array(self.lb)) | (x > np.array(self.ub)))]
        if self.num_rows:
            ax = self.matrix() @ x.astype(np.float64)
            lo, hi = np.array(self.row_lo), np.array(self.row_hi)
            bad += [self.row_names[r] for r in np.flatnonzero((ax < lo - 1e-6) | (ax > hi + 1e-6))]
        return bad
