"""The import graph of contact_site follows the layout: one way, no cycles, no back-edges.

Every import counts, at module level or inside a function, absolute or relative: a
function-level import is a cycle put off until run time, not a cycle avoided.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterable
from pathlib import Path

import pytest

PACKAGE = "contact_site"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE
# contact, submissions, delivery, admin, and whichever subpackage comes next.
SUBPACKAGES = sorted(path.parent.name for path in ROOT.glob("*/__init__.py"))
# The process entry points (WSGI, Celery, the `contact-site` command) build the app, so
# they alone import create_app.
ENTRY_POINTS = {f"{PACKAGE}.wsgi", f"{PACKAGE}.celery_app", f"{PACKAGE}.command"}

Graph = dict[str, set[str]]


def module_name(path: Path, root: Path = ROOT) -> str:
    """contact_site/delivery/outbox.py → contact_site.delivery.outbox (packages by their name)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources(root: Path = ROOT) -> dict[str, tuple[str, bool]]:
    """Every module of the package: its source, and whether it is a package's __init__."""
    return {module_name(path, root): (path.read_text(), path.name == "__init__.py")
            for path in sorted(root.rglob("*.py"))}


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name a relative import points at, seen from `module`."""
    if level == 0:
        return target or ""
    base = module.split(".")
    # An __init__ is its package: one dot is the package itself.
    base = base[: len(base) - level + (1 if is_package else 0)]
    return ".".join(base + ([target] if target else []))


def imports_of(module: str, source: str, is_package: bool, known: Iterable[str]) -> set[str]:
    """The package's modules that `module` imports, anywhere in its source."""
    known = set(known)
    found: set[str] = set()

    def deepest_known(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node.level, node.module)
            # `from pkg import x`: x is a module of pkg, or a name defined in pkg.
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                     for alias in node.names]
        for name in names:
            target = deepest_known(name)
            if target is not None and target != module:
                found.add(target)
    return found


def import_graph(root: Path = ROOT) -> Graph:
    """module → the package's modules it imports."""
    found = sources(root)
    return {name: imports_of(name, source, is_package, found)
            for name, (source, is_package) in found.items()}


def component(module: str) -> str:
    """The node a module belongs to: its subpackage, or the top-level module itself."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in SUBPACKAGES:
        return ".".join(parts[:2])
    return module


def component_graph(graph: Graph) -> Graph:
    """The graph between subpackages and top-level modules (edges inside one dropped)."""
    between: Graph = {}
    for source, targets in graph.items():
        node = between.setdefault(component(source), set())
        node.update(component(t) for t in targets if component(t) != component(source))
    return between


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                found.append(sorted(members))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def cycle_edges(graph: Graph) -> list[str]:
    """The edges inside each cycle, readable: 'a → b'."""
    return [f"{source} → {target}" for members in cycles(graph) for source in members
            for target in sorted(graph[source]) if target in members]


def edges_into(graph: Graph, sources_prefix: str, forbidden: Iterable[str]) -> list[str]:
    """Edges from modules under `sources_prefix` to modules under any `forbidden` prefix."""
    def under(module: str, prefix: str) -> bool:
        return module == prefix or module.startswith(prefix + ".")

    return sorted(f"{source} → {target}" for source, targets in graph.items()
                  if under(source, sources_prefix) for target in targets
                  if any(under(target, f) for f in forbidden))


GRAPH = import_graph()

REPOSITORY = ROOT.parent
# What git, tools and runs keep in the folder: not files of the repository.
GENERATED_ANYWHERE = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis"}
GENERATED_AT_THE_TOP = {".git", ".venv", "test-output", "instance", "uploads"}
# Pointers at documents outside the repository, matched in any case and written here in
# lower case, so that this file holds none of them as such.
OUTSIDE_POINTERS = ("spec " + "\u00a7", "traps" + ".md", ".." + "/shared")
# Flask extensions name their own state in app.extensions; the app's own state is typed
# (contact_site/app_state.py), never a string key.
THIRD_PARTY_EXTENSIONS = {"mail", "sqlalchemy", "babel", "celery", "migrate", "csrf"}
EXTENSIONS_METHODS = {"get", "setdefault", "pop", "__getitem__", "__setitem__"}


def repository_files(root: Path = REPOSITORY) -> list[Path]:
    """Every file of the repository, without what tools and test runs generate."""
    found: list[Path] = []
    for folder, subfolders, files in os.walk(root):
        skipped = GENERATED_ANYWHERE | (GENERATED_AT_THE_TOP if Path(folder) == root else set())
        subfolders[:] = [name for name in subfolders if name not in skipped]
        found.extend(Path(folder) / name for name in files)
    return sorted(found)


def outside_pointers(path: Path, root: Path = REPOSITORY) -> list[str]:
    """'path:line: text' for each line of the file that points outside the repository."""
    data = path.read_bytes()
    if not any(pointer.encode() in data.lower() for pointer in OUTSIDE_POINTERS):
        return []
    lines = data.decode(errors="replace").splitlines()
    return [f"{path.relative_to(root)}:{number}: {line.strip()}"
            for number, line in enumerate(lines, 1)
            if any(pointer in line.lower() for pointer in OUTSIDE_POINTERS)]


def extensions_keys(source: str) -> list[str | None]:
    """The keys `source` reads or writes in some `….extensions` (None: not a string literal)."""
    keys: list[str | None] = []
    for node in ast.walk(ast.parse(source)):
        key: ast.expr | None = None
        if isinstance(node, ast.Subscript) and _is_extensions(node.value):
            key = node.slice
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in EXTENSIONS_METHODS and _is_extensions(node.func.value)):
            key = node.args[0] if node.args else None
        else:
            continue
        literal = isinstance(key, ast.Constant) and isinstance(key.value, str)
        keys.append(key.value if literal else None)
    return keys


def _is_extensions(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "extensions"


def test_the_graph_sees_every_module_and_function_level_imports():
    """The parser reads the whole package, function-level imports included."""
    assert {f"{PACKAGE}.contact", f"{PACKAGE}.delivery.outbox", f"{PACKAGE}.schema"} <= set(GRAPH)
    assert f"{PACKAGE}.contact" in GRAPH[PACKAGE]  # create_app registers the blueprint


@pytest.mark.parametrize(("module", "is_package", "source", "expected"), [
    ("p.a.m", False, "from . import n", {"p.a.n"}),
    ("p.a.m", False, "from .. import b", {"p.b"}),
    ("p.a.m", False, "from ..b.x import thing", {"p.b.x"}),
    ("p.a.m", False, "def f():\n    from ..b import x\n", {"p.b.x"}),
    ("p.a", True, "from .n import thing", {"p.a.n"}),
    ("p.a", True, "from . import n", {"p.a.n"}),
    ("p.a.m", False, "from .. import create_app", {"p"}),
    ("p.a.m", False, "import p.b.x as y\nimport flask", {"p.b.x"}),
    ("p.a.m", False, "if True:\n    from p import create_app\n", {"p"}),
], ids=["sibling", "parent-sibling", "cousin-module", "function-level", "init-relative",
        "init-from-dot", "package-itself", "absolute", "nested-block"])
def test_imports_are_resolved(module, is_package, source, expected):
    """Relative imports resolve from the module's package; names fall back to their module."""
    known = {"p", "p.a", "p.a.m", "p.a.n", "p.b", "p.b.x"}
    assert imports_of(module, source, is_package, known) == expected


def test_cycles_are_found_with_their_members():
    """The cycle finder reports each cycle once, and nothing for a one-way graph."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycle_edges(graph) == ["a → b", "b → c", "c → a"]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_modules_of_a_subpackage_are_one_node():
    """Between subpackages, a module counts as its subpackage; top-level modules as themselves."""
    graph = {f"{PACKAGE}.delivery.outbox": {f"{PACKAGE}.delivery.models",
                                            f"{PACKAGE}.submissions.models",
                                            f"{PACKAGE}.extensions"}}
    assert component_graph(graph) == {
        f"{PACKAGE}.delivery": {f"{PACKAGE}.submissions", f"{PACKAGE}.extensions"}}


def test_no_import_cycles_between_modules():
    """No module imports, directly or through others, a module that imports it back."""
    assert cycle_edges(GRAPH) == []


def test_no_import_cycles_between_subpackages():
    """contact, submissions, delivery, admin and the top-level modules import one way."""
    assert cycle_edges(component_graph(GRAPH)) == []


@pytest.mark.parametrize(("sources_prefix", "forbidden"), [
    (f"{PACKAGE}.delivery", [f"{PACKAGE}.contact", f"{PACKAGE}.admin"]),
    (f"{PACKAGE}.submissions",
     [f"{PACKAGE}.contact", f"{PACKAGE}.admin", f"{PACKAGE}.delivery"]),
], ids=["delivery-never-imports-the-web-side", "submissions-import-no-service-above"])
def test_no_back_edges(sources_prefix, forbidden):
    """The lower layer never imports the layers built on it."""
    assert edges_into(GRAPH, sources_prefix, forbidden) == []


def test_only_the_entry_points_import_the_package_itself():
    """contact_site/__init__.py (create_app) is imported by wsgi.py and celery_app.py only."""
    importers = sorted(source for source, targets in GRAPH.items() if PACKAGE in targets)
    assert set(importers) <= ENTRY_POINTS, importers


@pytest.mark.parametrize(("source", "expected"), [
    ('app.extensions["mail"]', ["mail"]),
    ('current_app.extensions.get("contact_started")', ["contact_started"]),
    ("app.extensions.setdefault(key, kind())", [None]),
    ('app.extensions["celery"] = celery_app', ["celery"]),
    ("app.config.get('DEBUG')", []),
], ids=["subscript", "get", "computed-key", "assignment", "not-extensions"])
def test_extensions_keys_are_found(source, expected):
    """Reads and writes of app.extensions are found, with their key when it is a literal."""
    assert extensions_keys(source) == expected


def test_the_apps_own_state_is_typed_not_a_string_key():
    """Only third-party extensions keep string keys in app.extensions; the app's own state
    goes through contact_site/app_state.py (one dataclass per concern)."""
    misused = sorted(f"{module}: {key!r}" for module, (source, _) in sources().items()
                     for key in extensions_keys(source)
                     if key not in THIRD_PARTY_EXTENSIONS
                     and not (key is None and module == f"{PACKAGE}.app_state"))
    assert misused == []


def test_outside_pointers_are_found(tmp_path):
    """A pointer is found in any line of a file; a clean file and generated folders are not."""
    (tmp_path / "cited.md").write_text("fine\nsee " + OUTSIDE_POINTERS[1] + "\n")
    (tmp_path / "clean.md").write_text("see docs/guarantees.md\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "cited.pyc").write_text(OUTSIDE_POINTERS[0])
    found = [hit for path in repository_files(tmp_path) for hit in outside_pointers(path, tmp_path)]
    assert found == [f"cited.md:2: see {OUTSIDE_POINTERS[1]}"]


def test_the_repository_stands_alone():
    """No file points at documents outside the repository: code, tests, templates and the
    README cite README.md or docs/*.md instead."""
    found = [hit for path in repository_files() for hit in outside_pointers(path)]
    assert found == []
