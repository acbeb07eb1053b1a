"""The layout's rules (docs/ARCHITECTURE.md) hold, and the checks that guard them can fail.

- imports run one way (app.py → reconciler → receiver) and the pure core does no I/O: the
  import-linter contracts in pyproject.toml;
- no import cycle between any two modules, however indirect (grimp's import graph);
- no application module over MAX_LINES lines.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("receiver", "reconciler")
MAX_LINES = 400
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` over the packages under `cwd`, with the pyproject.toml found there."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_import_contracts_hold() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_a_backward_import_breaks_the_contracts(tmp_path: Path) -> None:
    """The same contracts over a copy of the code in which the pure core imports the store and
    reconciler: lint-imports fails and names both broken rules."""
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    canonical = tmp_path / "receiver" / "canonical.py"
    canonical.write_text(canonical.read_text() + "\nimport reconciler.apply  # noqa\n")
    done = lint_imports(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    broken = " ".join(done.stdout.partition("Broken contracts")[2].split())
    assert "receiver never imports reconciler" in broken
    assert "The pure core does no I/O" in broken
    assert "2 broken" in done.stdout


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every set of modules that import each other, directly or not (Tarjan's strongly
    connected components of the import graph, iterative)."""
    ours = sorted(m for m in graph.modules if m.split(".")[0] in PACKAGES)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in ours:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, imported = work[-1]
            for other in imported:
                if other.split(".")[0] not in PACKAGES:
                    continue
                if other not in index:
                    index[other] = low[other] = len(index)
                    stack.append(other)
                    on_stack.add(other)
                    work.append(
                        (other, iter(sorted(graph.find_modules_directly_imported_by(other))))
                    )
                    break
                if other in on_stack:
                    low[module] = min(low[module], index[other])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[module])
                if low[module] == index[module]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == module:
                            break
                    if len(component) > 1:
                        cycles.append(sorted(component))
    return cycles


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, include_external_packages=True, cache_dir=None)


def test_no_module_imports_another_that_imports_it_back(graph: grimp.ImportGraph) -> None:
    assert import_cycles(graph) == []


def test_the_cycle_finder_finds_an_indirect_cycle(graph: grimp.ImportGraph) -> None:
    """webhooks → ingest → event_writer; one import back from event_writer closes a cycle."""
    graph.add_import(importer="receiver.event_writer", imported="receiver.webhooks")
    try:
        found = import_cycles(graph)
    finally:
        graph.remove_import(importer="receiver.event_writer", imported="receiver.webhooks")
    closed = {"receiver.webhooks", "receiver.ingest", "receiver.event_writer"}
    assert any(closed <= set(cycle) for cycle in found), found


def test_nothing_imports_the_app_module_back(graph: grimp.ImportGraph) -> None:
    """app.py assembles both packages; a module importing it would close a cycle through it."""
    importers = graph.find_modules_that_directly_import("app") if "app" in graph.modules else set()
    assert importers == set()


def application_modules() -> list[Path]:
    """Every hand-written module (the migrations are generated and frozen)."""
    found = [ROOT / "app.py"]
    for package in PACKAGES:
        found += (p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts)
    return sorted(found)


def test_no_module_is_longer_than_max_lines() -> None:
    lengths = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for path in application_modules()
    }
    assert {path: n for path, n in lengths.items() if n > MAX_LINES} == {}
