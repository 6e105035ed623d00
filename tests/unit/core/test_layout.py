"""The house rules of the package layout, checked on the source (no imports, fast)."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[3] / "metanas"


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def test_no_library_module_imports_the_command_line():
    """Only ``python -m metanas`` (``__main__.py``) imports ``metanas.app``; library code runs experiments through
    ``metanas.experiment``."""
    offenders = [str(p.relative_to(PKG)) for p in PKG.rglob("*.py")
                 if p.name not in ("__main__.py", "app.py") and "metanas.app" in _imports(p)]
    assert offenders == []
    assert "metanas.app" in _imports(PKG / "__main__.py")


def test_runners_do_not_dispatch_on_task_class_names_or_layouts():
    for p in (PKG / "runners").glob("*.py"):
        src = p.read_text()
        assert "type(family).__name__ ==" not in src and ".layout ==" not in src, p.name


def test_figures_are_drawn_in_one_module():
    """Every plot helper lives in ``metanas/plots.py``: no other library module imports matplotlib."""
    offenders = [str(p.relative_to(PKG)) for p in PKG.rglob("*.py")
                 if p.name != "plots.py" and any(m.split(".")[0] == "matplotlib" for m in _imports(p))]
    assert offenders == []


def _metanas_names(tree: ast.Module) -> set[str]:
    return {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
            and (node.module or "").startswith("metanas") for a in node.names}


def test_runners_branch_on_behaviour_not_on_metanas_classes():
    """A runner may test ``isinstance(obj, SomeMetanasClass)`` only to refuse a config (the branch just raises);
    what differs between spaces or objectives is asked of the object (``space.describe``, ``objective.live``)."""
    offenders = []
    for p in (PKG / "runners").glob("*.py"):
        tree = ast.parse(p.read_text())
        ours = _metanas_names(tree)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.If, ast.IfExp)):
                continue
            checks = [c for c in ast.walk(node.test) if isinstance(c, ast.Call) and getattr(c.func, "id", "") ==
                      "isinstance" and len(c.args) == 2 and any(isinstance(n, ast.Name) and n.id in ours
                                                                 for n in ast.walk(c.args[1]))]
            refuses = isinstance(node, ast.If) and not node.orelse and all(isinstance(b, ast.Raise)
                                                                           for b in node.body)
            if checks and not refuses:
                offenders.append(f"{p.name}:{node.lineno}")
    assert offenders == []


def test_one_mlp_forward():
    """The package's MLP computation is ``metanas.nn.primitives.mlp`` (``nn.modules.MLP`` calls it); no other module
    defines its own ``mlp``."""
    home = PKG / "nn" / "primitives.py"

    def mlps(p: Path) -> list[str]:
        return [f"{p.relative_to(PKG)}:{node.lineno}" for node in ast.walk(ast.parse(p.read_text()))
                if isinstance(node, ast.FunctionDef) and node.name.lstrip("_") in ("mlp", "mlp_apply")]

    assert len(mlps(home)) == 1
    assert [o for p in PKG.rglob("*.py") if p != home for o in mlps(p)] == []


# ---- rooms by role: the import layering -------------------------------------------------------------------------
# Low to high. A module may import from its own room or a lower one, never from a higher one; lazy imports (inside
# functions) count too. Loose modules of the foundation are usable everywhere.
LAYERS = [
    {"config", "run_store", "compilation_cache", "initializers", "sharding", "metafeatures", "plots", "stats", "nn"},
    {"search_spaces", "models"},
    {"supernet"},
    {"benchmarks", "data"},
    {"predictors"},
    {"search", "meta"},
    {"hpo"},
    {"runners", "experiment", "schemas", "report", "sweep", "optuna"},
    {"app", "__main__"},
]


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "metanas" and len(parts) > 1 else None


def _rank(room: str) -> int:
    for i, rooms in enumerate(LAYERS):
        if room in rooms:
            return i
    raise AssertionError(f"room metanas.{room} is in no layer of tests/unit/core/test_layout.py: LAYERS; add it")


def _module_name(p: Path) -> str:
    rel = p.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _metanas_imports(p: Path) -> set[str]:
    """Modules of metanas that ``p`` imports (``from metanas.x import y`` counts ``metanas.x.y`` when that is a
    module, else ``metanas.x``)."""
    out = set()
    for node in ast.walk(ast.parse(p.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if _is_module(f"{node.module}.{a.name}") else node.module
                     for a in node.names]
        out |= {n for n in names if n.startswith("metanas.")}
    return out


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (PKG / rel).with_suffix(".py").exists() or (PKG / rel / "__init__.py").exists()


def _upward_imports(imports: dict[str, set[str]]) -> list[str]:
    """``module imports m`` for every import of a higher room's module by a lower room's (``imports``: module name ->
    the metanas modules it imports)."""
    return [f"{me} imports {m}" for me, ms in sorted(imports.items()) for m in sorted(ms)
            if _room(me) and _room(m) and _rank(_room(m)) > _rank(_room(me))]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles a depth-first walk of ``graph`` (module -> modules it imports) meets."""
    seen, stack, cycles = set(), [], []

    def visit(m):
        if m in stack:
            cycles.append(stack[stack.index(m):] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            visit(n)
        stack.pop()

    for m in sorted(graph):
        visit(m)
    return cycles


def _package_graph() -> dict[str, set[str]]:
    return {_module_name(p): {m for m in _metanas_imports(p) if _is_module(m)} for p in PKG.rglob("*.py")}


def test_no_import_from_a_lower_room_into_a_higher_one():
    assert _upward_imports({_module_name(p): _metanas_imports(p) for p in PKG.rglob("*.py")}) == []


def test_no_import_cycle_between_modules():
    assert _cycles(_package_graph()) == []


def test_the_layering_check_catches_an_upward_import(tmp_path):
    """The two checks above can fail: an upward import and a cycle are found in a hand-made module graph."""
    assert _rank("predictors") < _rank("search") < _rank("runners")
    bad = tmp_path / "m.py"
    bad.write_text("from metanas.runners.context import RunContext\n")
    assert "metanas.runners.context" in _metanas_imports(bad)
    graph = {"metanas.predictors.pairwise": {"metanas.runners.context"},  # a model importing a runner: upward
             "metanas.search.table_search": {"metanas.predictors.pairwise"},  # downward: fine
             "metanas.search.a": {"metanas.search.b"}, "metanas.search.b": {"metanas.search.a"}}  # a cycle
    assert _upward_imports(graph) == ["metanas.predictors.pairwise imports metanas.runners.context"]
    assert _cycles(graph) == [["metanas.search.a", "metanas.search.b", "metanas.search.a"]]
    assert _cycles({m: v for m, v in graph.items() if m != "metanas.search.b"}) == []
