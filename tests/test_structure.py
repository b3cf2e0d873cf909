"""The package's structure (issue 17), read from the source with ``ast``: no import cycle between
refcolor modules (imports inside functions count too), imports only in the directions of the layer
table of docs/ARCHITECTURE.md, no private name taken from another refcolor module, ``torch.load``
only in the weights door and the training state, PyAV only in the video I/O modules."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "refcolor"

#: Modules that may call ``torch.load`` (third-party weights; the trainer's own resume state).
TORCH_LOAD_MODULES = {"refcolor.hub", "refcolor.train.state"}
#: Modules that may import PyAV: reading, writing and muxing videos.
AV_MODULES = {"refcolor.video", "refcolor.video_write", "refcolor.audio_mux", "refcolor.video_join"}
ARCHITECTURE = Path(__file__).resolve().parents[1] / "docs" / "ARCHITECTURE.md"
_BELOW_EVAL = ("leaves", "basics", "video I/O", "network", "library", "inference", "pipeline")
#: The layers of docs/ARCHITECTURE.md ("Layout and import direction"), bottom up, and the layers
#: each may import besides its own. Which modules each layer holds is read from that table.
LAYER_RULES = {
    "leaves": (),
    "basics": ("leaves",),
    "video I/O": ("leaves",),
    "network": ("leaves", "basics"),
    "library": ("leaves", "basics", "video I/O", "network"),
    "inference": ("leaves", "basics", "video I/O", "network", "library"),
    "pipeline": ("leaves", "basics", "video I/O", "network", "library", "inference"),
    "evaluation": _BELOW_EVAL,
    "training": _BELOW_EVAL,  # and from evaluation only LAYER_EXCEPTIONS
    "front ends": (*_BELOW_EVAL, "evaluation", "training"),
}
#: Single modules a layer may import from a layer its rule leaves out.
LAYER_EXCEPTIONS = {"training": {"refcolor.eval.metrics"}}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, tuple[Path, ast.Module]]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        out[_module_name(path)] = (path, ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return out


MODULES = _modules()


def _base(name: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module that ``from <node.module> import ...`` names."""
    if node.level == 0:
        return node.module or ""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _imports(name: str):
    """(imported refcolor module, names taken from it, line) for every import of ``name``,
    at module level and inside functions alike."""
    path, tree = MODULES[name]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "refcolor":
                    yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = _base(name, path, node)
            if base.split(".")[0] != "refcolor":
                continue
            taken = []
            for alias in node.names:
                if f"{base}.{alias.name}" in MODULES:  # from . import video_write: the module itself
                    yield f"{base}.{alias.name}", [], node.lineno
                else:
                    taken.append(alias.name)
            if taken:
                yield base, taken, node.lineno


def _graph() -> dict[str, set[str]]:
    graph = {name: set() for name in MODULES}
    for name in MODULES:
        for target, _, _ in _imports(name):
            if target in MODULES and target != name:
                graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
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


def test_the_scan_sees_the_package():
    # guards the tests below against passing on an empty or misread tree
    assert {"refcolor.video", "refcolor.pipeline", "refcolor.train.sources", "refcolor.eval.runner"} <= set(MODULES)
    graph = _graph()
    assert "refcolor.errors" in graph["refcolor.video"]
    assert "refcolor.video_write" in graph["refcolor.resume"]  # imported inside a function
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle():
    assert _cycles(_graph()) == []


def test_evaluation_never_imports_training():
    graph = _graph()
    seen, todo = set(), [m for m in MODULES if m.startswith("refcolor.eval")]
    while todo:  # everything evaluation reaches, directly or not
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += graph[m]
    assert sorted(m for m in seen if m.startswith("refcolor.train")) == []


def _doc_layers() -> list[tuple[str, set[str]]]:
    """(layer, modules) rows of the layer table of docs/ARCHITECTURE.md, in its order."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    lines = text[text.index("| layer | modules | may import |"):].split("\n\n", 1)[0].splitlines()[2:]
    rows = []
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows.append((cells[0], {m.rstrip("/") for m in re.findall(r"`([^`]+)`", cells[1])}))
    return rows


def _top(name: str) -> str:
    """A module's name in the layer table: refcolor.eval.runner -> eval, refcolor -> __init__."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer_violations(graph: dict[str, set[str]], rows: list[tuple[str, set[str]]]) -> list[str]:
    layer_of = {module: layer for layer, modules in rows for module in modules}
    found = []
    for a in sorted(graph):
        la = layer_of[_top(a)]
        for b in sorted(graph[a]):
            lb = layer_of[_top(b)]
            if lb != la and lb not in LAYER_RULES[la] and b not in LAYER_EXCEPTIONS.get(la, ()):
                found.append(f"{a} ({la}) imports {b} ({lb})")
    return found


def test_every_module_is_in_one_layer_of_the_architecture_table():
    rows = _doc_layers()
    assert [layer for layer, _ in rows] == list(LAYER_RULES)
    placed = [m for _, modules in rows for m in modules]
    assert sorted(m for m in set(placed) if placed.count(m) > 1) == []
    assert sorted({_top(m) for m in MODULES} - set(placed)) == []  # a new module needs its row
    assert sorted(set(placed) - {_top(m) for m in MODULES}) == []  # and a row names no module that is gone


def test_imports_follow_the_layers_of_the_architecture_table():
    assert _layer_violations(_graph(), _doc_layers()) == []


@pytest.mark.parametrize("importer, imported, allowed", [
    ("refcolor.eval.runner", "refcolor.train.sources", False),
    ("refcolor.models.network", "refcolor.video", False),
    ("refcolor.models.warp", "refcolor.checkpoint", False),
    ("refcolor.models.backbones", "refcolor.app.ui", False),
    ("refcolor.train.data", "refcolor.eval.runner", False),
    ("refcolor.video", "refcolor.config", False),
    ("refcolor.errors", "refcolor.text", True),
    ("refcolor.errors", "refcolor.video", False),
    ("refcolor.inference", "refcolor.pipeline", False),
    ("refcolor.train.validate", "refcolor.eval.metrics", True),
    ("refcolor.cli", "refcolor.train.command", True),
    ("refcolor.shots", "refcolor.models.backbones", True),
])
def test_the_layer_check(importer, imported, allowed):
    assert (_layer_violations({importer: {imported}, imported: set()}, _doc_layers()) == []) is allowed


def test_the_streaming_memory_is_changed_only_by_its_owner():
    # pipeline.colorize used to write colorizer.memory; Colorizer.restore_memory / reset_memory do it
    found = []
    for name, (_, tree) in MODULES.items():
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
            found += [f"{name}:{node.lineno}" for t in targets if isinstance(t, ast.Attribute) and t.attr == "memory"
                      and not (isinstance(t.value, ast.Name) and t.value.id == "self")]
    assert found == []


def _module_aliases(name: str) -> dict[str, str]:
    """Local names bound to refcolor modules in ``name`` (``from . import video`` -> video)."""
    path, tree = MODULES[name]
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = _base(name, path, node)
            for alias in node.names:
                if f"{base}.{alias.name}" in MODULES:
                    out[alias.asname or alias.name] = f"{base}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES and alias.asname:
                    out[alias.asname] = alias.name
    return out


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_private_name_taken_from_another_module():
    found = []
    for name in MODULES:
        for target, taken, line in _imports(name):
            found += [f"{name}:{line} imports {target}.{n}" for n in taken if _private(n)]
            if _private(target.rpartition(".")[2]):
                found.append(f"{name}:{line} imports the private module {target}")
        aliases = _module_aliases(name)
        for node in ast.walk(MODULES[name][1]):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id in aliases and _private(node.attr):
                found.append(f"{name}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert found == []


def _calls_torch_load(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "load" and isinstance(node.value, ast.Name) \
                and node.value.id == "torch":
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "torch" and any(a.name == "load" for a in node.names):
            return True
    return False


def test_torch_load_only_in_the_weights_door_and_the_training_state():
    users = {name for name, (_, tree) in MODULES.items() if _calls_torch_load(tree)}
    assert users <= TORCH_LOAD_MODULES, sorted(users - TORCH_LOAD_MODULES)


def _uses_pyav(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "av" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "av":
            return True
        if isinstance(node, ast.Attribute) and node.attr == "open" and isinstance(node.value, ast.Name) \
                and node.value.id == "av":
            return True
    return False


def test_pyav_only_in_the_video_io_modules():
    users = {name for name, (_, tree) in MODULES.items() if _uses_pyav(tree)}
    assert users <= AV_MODULES, sorted(users - AV_MODULES)


@pytest.mark.parametrize("source, expected", [
    ("import av\n", True), ("def f():\n    import av.error\n", True), ("from av import open\n", True),
    ("c = av.open('x')\n", True), ("import avx\nfrom .av import y\n", False),
])
def test_pyav_detector(source, expected):
    assert _uses_pyav(ast.parse(source)) is expected


@pytest.mark.parametrize("source, expected", [
    ("torch.load(p)\n", True), ("from torch import load\n", True), ("torch.jit.load(p)\nx.load(p)\n", False),
])
def test_torch_load_detector(source, expected):
    assert _calls_torch_load(ast.parse(source)) is expected
