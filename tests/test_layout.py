"""The house rules of the package layout, checked on the source (no imports, fast)."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "metanas"


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
    """The package's MLP computation is ``metanas.nn.functional.mlp`` (``nn.modules.MLP`` calls it); no other module
    defines its own ``mlp``."""
    nn = PKG / "nn"
    offenders = [f"{p.relative_to(PKG)}:{node.lineno}" for p in PKG.rglob("*.py") if nn not in p.parents
                 for node in ast.walk(ast.parse(p.read_text()))
                 if isinstance(node, ast.FunctionDef) and node.name.lstrip("_") in ("mlp", "mlp_apply")]
    assert offenders == []
