"""The layering of docs/architecture.md holds.

The import-linter contracts are kept, no modules import each other in a
circle, and SQL is built only in the data layer.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "src" / "uploadsvc"
REPO_ROOT = PACKAGE_DIR.parents[1]

# Where SQL may be built: the data layer (queries and bulk writes), the
# models (table definitions) and db.py (engine, column types).
DATA_LAYER = ("repository/", "models/", "db.py")
# What the other layers may take from SQLAlchemy: session and engine types
# (to pass a session on) and its exceptions (to tell an outage from a bug).
ALLOWED_SQLALCHEMY = ("sqlalchemy.ext.asyncio", "sqlalchemy.exc")


def test_import_linter_contracts_are_kept() -> None:
    # The contracts are in pyproject.toml ([tool.importlinter]); this runs
    # import-linter's own command on them, as `uv run lint-imports` does.
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_import_circle() -> None:
    graph = grimp.build_graph("uploadsvc", include_external_packages=False)
    circles = [component for component in _strongly_connected(graph) if len(component) > 1]
    assert circles == []


def test_sql_is_built_only_in_the_data_layer() -> None:
    offenders: list[str] = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        relative = path.relative_to(PACKAGE_DIR).as_posix()
        if relative.startswith(DATA_LAYER):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            for module in _imported_modules(node):
                if module.split(".")[0] == "sqlalchemy" and not module.startswith(
                    ALLOWED_SQLALCHEMY
                ):
                    offenders.append(f"{relative}:{getattr(node, 'lineno', 0)} imports {module}")
    assert offenders == []


def _imported_modules(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and not node.level:
        # `from sqlalchemy import exc` is sqlalchemy.exc; `from sqlalchemy import select` is not.
        return [f"{node.module}.{alias.name}" for alias in node.names]
    return []


def _strongly_connected(graph: grimp.ImportGraph) -> list[set[str]]:
    """Tarjan's algorithm over the package's modules (iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[set[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            module, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append(
                        (child, iter(sorted(graph.find_modules_directly_imported_by(child))))
                    )
                    break
                if child in on_stack:
                    low[module] = min(low[module], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[module])
                if low[module] == index[module]:
                    component: set[str] = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == module:
                            break
                    components.append(component)
    return components
