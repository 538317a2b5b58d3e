"""The import rules of docs/architecture.md, checked on every module under optalloc/ (parsed with ``ast``)
and, for what must not load at import time, in a fresh interpreter.

The rules name packages that do not exist yet (``rl``, ``timeshare``): when they are added, they land
under the rules already written here.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "optalloc"

# The parts of optalloc: a subpackage, or a top-level module (``optalloc/solve.py`` is "solve";
# ``optalloc/__init__.py`` is "optalloc", the public facade over core and solve).
ENGINES = ("models", "heuristics", "timeshare")
# Packing engines: they never import each other (solve and anytime combine them).
PACKING = ("models", "heuristics")
BELOW_SOLVE = {"core", "io", *ENGINES, "solve", "anytime", "pop", "optalloc"}
# What each part may import of optalloc, besides itself.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "io": {"core"},
    "testing": {"core", "io"},  # our users' test helpers check answers without our engines
    "models": {"core", "io"},
    "heuristics": {"core", "io"},
    "timeshare": {"core", "io", "models", "heuristics"},  # time fractions first, then rounds placed by them
    "anytime": {"core", "io", "models", "heuristics", "solve"},
    # the partitioned method: parts solved by solve() (any inner method), merged, repaired by a heuristic
    "pop": {"core", "io", *ENGINES, "solve", "anytime"},
    "solve": {"core", "io", *ENGINES, "anytime", "pop"},
    "optalloc": {"core", "solve"},
    "adaptive": BELOW_SOLVE,
    "sim": BELOW_SOLVE | {"adaptive"},
    "rl": BELOW_SOLVE | {"adaptive", "sim"},
    "service": BELOW_SOLVE | {"adaptive", "io"},
    "cli": BELOW_SOLVE | {"adaptive", "sim", "rl", "service", "testing"},
    "__main__": {"cli"},
}
# Third-party packages only the faces (the command line and the web service) import.
FACES_ONLY = {"typer", "click", "rich", "fastapi", "starlette", "uvicorn", "pydantic"}
FACES = {"cli", "service"}
# Optional or slow dependencies: never loaded by importing optalloc. A module may import one at its top
# only if no import-time path leads to it: the opt-in packages (rl, service), which a user imports on
# purpose and which nothing else imports at its top.
HEAVY = {"torch", "ray", "fastapi", "uvicorn", "cvxpy", "prometheus_client", "psutil", "pynvml", "matplotlib"}
OPT_IN = ("rl", "service")
# The core knows no solver.
CORE_THIRD_PARTY = {"numpy"}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module (dotted)
    target: str  # what it imports (dotted; optalloc.x.y, or a third-party top-level name)
    line: int
    top_level: bool  # runs when the module is imported (not inside a function, not under TYPE_CHECKING)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str:
    """``optalloc.adaptive.controller.step`` -> ``adaptive``; ``optalloc.solve`` -> ``solve``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "optalloc"


def _is_module(dotted: str) -> bool:
    path = ROOT.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path) -> list[Import]:
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                visit(child, False)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), False)
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), top)
            elif isinstance(child, ast.Import):
                found.extend(Import(module, a.name, child.lineno, top) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                if base == "__future__":
                    continue
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    # ``from optalloc import heuristics`` imports the subpackage; ``from optalloc import Job`` the facade
                    target = sub if base.startswith("optalloc") and _is_module(sub) else base
                    found.append(Import(module, target, child.lineno, top))
            else:
                visit(child, top)

    visit(tree, True)
    return found


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}
IMPORTS = [imp for p in MODULES.values() for imp in imports_of(p)]


def _ours(target: str) -> bool:
    return target == "optalloc" or target.startswith("optalloc.")


def test_the_rules_see_the_whole_package() -> None:
    """Not vacuous: every part is known to the rules, and the checks see the imports that exist."""
    assert len(MODULES) > 80
    parts = {part_of(m) for m in MODULES}
    assert parts <= set(ALLOWED), f"parts without import rules: {sorted(parts - set(ALLOWED))}"
    edges = {(part_of(i.module), part_of(i.target)) for i in IMPORTS if _ours(i.target)}
    for edge in [
        ("sim", "adaptive"),
        ("adaptive", "solve"),
        ("solve", "anytime"),
        ("solve", "pop"),
        ("pop", "solve"),
        ("service", "adaptive"),
        ("cli", "sim"),
        ("cli", "service"),
        ("io", "core"),
    ]:
        assert edge in edges


def test_each_part_imports_only_the_parts_below_it() -> None:
    bad = [
        f"{i.module}:{i.line} imports {i.target}"
        for i in IMPORTS
        if _ours(i.target)
        and part_of(i.target) != part_of(i.module)
        and part_of(i.target) not in ALLOWED[part_of(i.module)]
    ]
    assert not bad, "imports against the layers of docs/architecture.md:\n" + "\n".join(bad)


def test_the_packing_engines_never_import_each_other_nor_above() -> None:
    bad = [
        f"{i.module}:{i.line} imports {i.target}"
        for i in IMPORTS
        if part_of(i.module) in PACKING and _ours(i.target) and part_of(i.target) in set(ENGINES) - {part_of(i.module)}
    ]
    assert not bad, "\n".join(bad)


def test_the_production_loop_never_imports_the_simulator() -> None:
    bad = [
        f"{i.module}:{i.line} imports {i.target}"
        for i in IMPORTS
        if part_of(i.module) == "adaptive" and _ours(i.target) and part_of(i.target) in {"sim", "rl", "cli", "service"}
    ]
    assert not bad, "\n".join(bad)


def test_only_the_faces_import_the_web_and_terminal_libraries() -> None:
    bad = [
        f"{i.module}:{i.line} imports {i.target}"
        for i in IMPORTS
        if i.target.split(".")[0] in FACES_ONLY and part_of(i.module) not in FACES
    ]
    assert not bad, "\n".join(bad)


def test_the_core_imports_no_solver() -> None:
    bad = [
        f"{i.module}:{i.line} imports {i.target}"
        for i in IMPORTS
        if part_of(i.module) == "core"
        and not _ours(i.target)
        and i.target.split(".")[0] not in sys.stdlib_module_names
        and i.target.split(".")[0] not in CORE_THIRD_PARTY
    ]
    assert not bad, "\n".join(bad)


def _entry_points() -> set[str]:
    """Modules a user may import without opting in to a heavy dependency: all but the opt-in packages."""
    return {m for m in MODULES if part_of(m) not in OPT_IN}


def _loaded_with(modules: set[str]) -> dict[str, str]:
    """Every optalloc module importing ``modules`` loads (top-level imports, parent packages included),
    with the module that led to it (itself for the ones given)."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for i in IMPORTS:
        if i.top_level and _ours(i.target):
            graph[i.module].add(i.target if i.target in MODULES else i.target.rpartition(".")[0])
    for m in MODULES:  # importing a.b.c runs a/__init__ and a/b/__init__ first
        parts = m.split(".")
        graph[m] |= {".".join(parts[:k]) for k in range(1, len(parts))}
    seen: dict[str, str] = {}
    todo = [(m, m) for m in sorted(modules)]
    while todo:
        m, via = todo.pop()
        if m in seen or m not in graph:
            continue
        seen[m] = via
        todo.extend((n, m) for n in graph[m])
    return seen


def test_heavy_optional_dependencies_are_imported_where_they_are_used() -> None:
    entry = _entry_points()
    loaded = _loaded_with(entry)
    bad = [
        f"{i.module}:{i.line} imports {i.target} when the module is imported (import it inside the function)"
        + ("" if i.module in entry else f"; {i.module} is imported by {loaded[i.module]} at its top")
        for i in IMPORTS
        if i.top_level and i.target.split(".")[0] in HEAVY and i.module in loaded
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.slow
def test_importing_optalloc_loads_no_heavy_dependency() -> None:
    """In a fresh interpreter: import every module importing optalloc may load, build the method registry,
    and find none of the heavy dependencies loaded."""
    modules = sorted(_entry_points() - {"optalloc.__main__"})
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "import optalloc\n"
        "optalloc.methods()\n"
        f"print(sorted(m for m in {sorted(HEAVY)!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# A module past this many lines says at its top why it is one piece (docs/architecture.md, "Adding code").
MAX_LINES = 600


def test_a_long_module_says_why_it_is_one_piece() -> None:
    bad = []
    for name, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        doc = ast.get_docstring(ast.parse(text)) or ""
        if lines > MAX_LINES and "Why this module is one piece" not in doc:
            bad.append(f"{name}: {lines} lines")
    assert not bad, (
        f"modules over {MAX_LINES} lines without 'Why this module is one piece ...' in their docstring "
        "(split them, or write the reason):\n" + "\n".join(bad)
    )
