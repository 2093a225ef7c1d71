"""The layout holds: every module imports on its own, no import cycles, dependencies point one
way (server -> voicebank -> prompts), and each external system has one seam.

Imports are read from the source (``ast``), not from a running interpreter, so a lazy import
inside a function counts as much as one at the top: it is a dependency all the same. Imports
under ``if TYPE_CHECKING:`` are for the type checker only and do not count.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("prompts", "voicebank", "server")
# Alembic loads these by path, not by import.
NOT_IMPORTED = ("server/db/migrations/",)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(NOT_IMPORTED) or path.name == "__main__.py":
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            for other in node.orelse:
                yield from _import_nodes(ast.Module(body=[other], type_ignores=[]))
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _import_nodes(node)


def imports_of(name: str) -> set[str]:
    """Every module ``name`` imports (first-party ones resolved to modules, others as named)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")
            anchor = anchor[: len(anchor) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            out.add(sub if sub in MODULES else base)
    out.discard(name)
    return out


GRAPH = {name: {m for m in imports_of(name) if m in MODULES} for name in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_walk_finds_the_product() -> None:
    # Guards the tests below against walking nothing.
    assert {"prompts.planner", "voicebank.catalogue", "server.app", "server.cli.main"} <= set(
        MODULES
    )
    assert len(MODULES) > 60


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    assert _cycles(GRAPH) == []


# (importer prefix, imported prefix): the importer must not import it. Dependencies point one
# way, and each subsystem of the service keeps to its own floor.
FORBIDDEN = [
    ("prompts", "voicebank"),
    ("prompts", "server"),
    ("voicebank", "server"),
    ("server.dialing", "server.calls"),
    ("server.dialing", "server.web"),
    ("server.calls", "server.web"),
    ("server.calls", "server.dialing"),
    ("server.db", "server.calls"),
    ("server.db", "server.dialing"),
    ("server.db", "server.web"),
]
for _high in ("server.app", "server.cli"):
    FORBIDDEN += [(p, _high) for p in ("prompts", "voicebank", "server.calls", "server.dialing")]
    FORBIDDEN += [(p, _high) for p in ("server.web", "server.db", "server.keys", "server.runtime")]
FORBIDDEN.append(("server.web", "server.cli"))


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_dependencies_point_one_way() -> None:
    wrong = sorted(
        f"{importer} imports {imported}"
        for importer, targets in GRAPH.items()
        for imported in targets
        for low, high in FORBIDDEN
        if _under(importer, low) and _under(imported, high) and not _under(importer, high)
    )
    assert wrong == []


# An external system's client library is imported in one module: its seam.
SEAMS = {
    "twilio.rest": {"server.dialing.twilio"},
    "twilio.base": {"server.dialing.twilio"},
    "twilio.http": {"server.dialing.twilio"},
    "twilio.request_validator": {"server.calls.signature"},  # incoming webhooks' signatures
    "boto3": {"voicebank.storage.s3"},
    "botocore": {"voicebank.storage.s3"},
}


def test_each_external_client_is_imported_by_its_seam_only() -> None:
    wrong = sorted(
        f"{name} imports {imported}"
        for name in MODULES
        for imported in imports_of(name)
        for library, seams in SEAMS.items()
        if _under(imported, library) and name not in seams
    )
    assert wrong == []


def test_server_has_at_most_ten_top_level_modules() -> None:
    top = sorted(p.name for p in (ROOT / "server").glob("*.py"))
    assert len(top) <= 10, top


# A parent process loads the third-party libraries once, then forks a child per module: each
# child imports its module with none of ours loaded, as a fresh interpreter would, at a small
# fraction of the cost of starting ~100 interpreters.
_FORK_IMPORTS = textwrap.dedent(
    """
    import importlib, os, sys, traceback
    for lib in sys.argv[2].split(","):
        importlib.import_module(lib)
    ours = sys.argv[3].split(",")
    assert not [m for m in sys.modules if m.split(".")[0] in ours], "parent imported ours"
    failed = 0
    for name in sys.argv[1].split(","):
        pid = os.fork()
        if pid == 0:
            try:
                importlib.import_module(name)
            except BaseException:
                print(f"--- {name}", flush=True)
                traceback.print_exc(file=sys.stdout)
                sys.stdout.flush()
                os._exit(1)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        failed += status != 0
    sys.exit(1 if failed else 0)
    """
)
_THIRD_PARTY = [
    "aiohttp.web",
    "alembic.command",
    "click",
    "jinja2",
    "numpy",
    "phonenumbers",
    "pydub",
    "scipy.signal",
    "soundfile",
    "sqlalchemy.ext.asyncio",
    "twilio.rest",
    "boto3",
]


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_every_module_imports_on_its_own() -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            _FORK_IMPORTS,
            ",".join(MODULES),
            ",".join(_THIRD_PARTY),
            ",".join(PACKAGES),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
