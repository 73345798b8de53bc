"""The layering of ``assistant/``: core <- services <- front ends, no import cycles, lazy heavy libraries."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("assistant", "finetune", "ingest")

# Every module of assistant/ and its layer. Core: models, retrieval, prompts, tools, the agent, answers, events.
# Services: settings, evaluation, training orchestration, the workspace. Front ends: the CLI, the app, the API.
CORE = {
    "assistant",
    "assistant.errors",
    "assistant.config",
    "assistant.events",
    "assistant.model",
    "assistant.openai_model",
    "assistant.backends",
    "assistant.retrieval",
    "assistant.prompt",
    "assistant.toolcalls",
    "assistant.tools",
    "assistant.calculator",
    "assistant.agent",
    "assistant.answer",
    "assistant.words",
    "assistant.repetition",
    "assistant.rewrite",
    "assistant.citations",
    "assistant.compute",
}
SERVICES = {
    "assistant.settings",
    "assistant.evaluate",
    "assistant.tool_eval",
    "assistant.training",
    "assistant.jobs",
    "assistant.workspace",
    "assistant.conversations",
}
FRONT_ENDS = ("assistant.cli", "assistant.app", "assistant.api", "assistant.__main__")
HEAVY = ("torch", "transformers", "gradio", "chromadb", "peft", "sentence_transformers")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> str:
    if module in CORE:
        return "core"
    if module in SERVICES:
        return "services"
    if module.startswith(FRONT_ENDS):
        return "front end"
    raise AssertionError(f"{module} has no layer: add it to CORE, SERVICES or FRONT_ENDS in {__file__}")


def imports(path: Path, modules: set[str]) -> list[tuple[str, bool]]:
    """(imported project module, at the top of the file) for each import of the project's own modules."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]  # `from pkg import module` or a name
        for name in names:
            if name.split(".")[0] not in PACKAGES:
                continue
            while name not in modules and "." in name:
                name = name.rsplit(".", 1)[0]
            if name in modules:
                found.append((name, id(node) in top))
    return found


def graph() -> tuple[dict[str, set[str]], list[str]]:
    files = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    edges: dict[str, set[str]] = {}
    inner = []
    for module, path in files.items():
        edges[module] = set()
        for target, at_top in imports(path, set(files)):
            if target != module:
                edges[module].add(target)
                if not at_top and module.startswith("assistant"):
                    inner.append(f"{module} imports {target} inside a function")
    return edges, inner


def cycles(edges: dict[str, set[str]], within: str) -> list[list[str]]:
    nodes = [n for n in edges if n.split(".")[0] == within]
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges[node]:
            if nxt not in nodes:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in nodes:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_in_any_package() -> None:
    edges, _ = graph()
    for package in PACKAGES:
        assert cycles(edges, package) == [], f"import cycles in {package}/"


def test_layers_point_one_way() -> None:
    edges, _ = graph()
    order = {"core": 0, "services": 1, "front end": 2}
    wrong = []
    for module, targets in edges.items():
        if not module.startswith("assistant"):
            assert not any(t.startswith("assistant") for t in targets), f"{module} imports up into assistant/"
            continue
        for target in targets:
            if target.startswith("assistant") and order[layer(target)] > order[layer(module)]:
                wrong.append(f"{module} ({layer(module)}) imports {target} ({layer(target)})")
    assert wrong == []


def test_project_imports_sit_at_the_top_of_each_file() -> None:
    _, inner = graph()
    assert inner == []


def test_the_layer_check_sees_a_cycle_and_a_wrong_direction(tmp_path: Path) -> None:
    edges = {"assistant.a": {"assistant.b"}, "assistant.b": {"assistant.a"}, "assistant.c": set()}
    assert cycles(edges, "assistant") == [["assistant.a", "assistant.b"]]
    assert layer("assistant.cli.ask") == "front end" and layer("assistant.workspace") == "services"


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys, io, contextlib\n"
        "from assistant.cli import main\n"
        "try:\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
