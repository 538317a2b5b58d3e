"""What ships with the package: the synthetic workloads' tables (package data), found by importlib.resources
in a checkout and present in a built wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

import pytest

from optalloc.io import synthetic, tables

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", tables.FILES)
def test_importlib_resources_finds_the_tables(name):
    data = resources.files("optalloc.io").joinpath("data", name)
    assert data.is_file()
    doc = tables.document(name)
    assert doc["source"] and doc["how"]
    for value in doc.values():
        if isinstance(value, dict) and "rows" in value:
            assert value["rows"] and all(len(r) == len(value["columns"]) for r in value["rows"])


def test_the_tables_are_the_documented_trace_figures():
    assert sum(k for *_, k in synthetic.NODE_SHAPES) == 1523
    assert sum(g * k for _, g, *_, k in synthetic.NODE_SHAPES) == 6212
    assert sum(k for *_, k in synthetic.SHARE_MILLI) == 3078
    assert sum(k for *_, k in synthetic.MULTI_GPU_POD_SHAPES) == 75
    assert sum(k for _, k in synthetic.PHILLY_GPU_MIX) == 1181
    assert synthetic.OPENB_MIX["cpu_only"] == pytest.approx(1088 / 8152)


def test_a_wrong_table_layout_is_refused():
    with pytest.raises(ValueError, match="columns"):
        tables.rows("openb.json", "share_milli", ("count", "gpu_milli"))
    with pytest.raises(KeyError, match="known"):
        tables.document("nope.json")


@pytest.mark.slow
def test_a_built_wheel_contains_the_package_data(tmp_path):
    """``pip wheel`` on a copy of the project (the checkout stays clean): the tables, the service's
    static files and py.typed are in the wheel."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    shutil.copytree(ROOT / "optalloc", src / "optalloc", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(tmp_path / "dist")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    (wheel,) = (tmp_path / "dist").glob("optalloc-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in tables.FILES:
        assert f"optalloc/io/data/{name}" in names
    assert "optalloc/py.typed" in names
    assert "optalloc/service/static/ui.js" in names
