"""The layering rules: the math layer never imports pyspark, and ``import sparkgmm`` stays free of it."""

import ast
import pathlib
import subprocess
import sys

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "sparkgmm"


def imported_modules(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_math_layer_never_imports_pyspark():
    # Every top-level module: the math, the model, the config and the command line (which loads sparkgmm.spark only
    # once the flags are good, so that a bad flag costs no JVM).
    math_files = [p for p in PACKAGE.glob("*.py")]
    assert {p.name for p in math_files} >= {"gaussian.py", "stats.py", "mixture.py", "em.py", "init.py", "config.py",
                                            "cli.py"}
    offenders = {p.name for p in math_files if any(m.split(".")[0] == "pyspark" for m in imported_modules(p))}
    assert offenders == set()


def test_importing_sparkgmm_and_scoring_does_not_load_pyspark():
    code = (
        "import sys, numpy as np, sparkgmm\n"
        "m = sparkgmm.Mixture([1.0], [[0.0, 0.0]], [[[1.0, 0.0], [0.0, 1.0]]])\n"
        "m.predict(np.zeros((3, 2)))\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in ('pyspark', 'py4j', 'sklearn')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def sklearn_importers(path: pathlib.Path) -> set[str | None]:
    """The functions of ``path`` that import scikit-learn (None: an import at module or class level)."""
    found = set()

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in child.names] if isinstance(child, ast.Import) else [child.module or ""]
                if any(name.split(".")[0] == "sklearn" for name in names):
                    found.add(function)
            visit(child, child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function)

    visit(ast.parse(path.read_text()), None)
    return found


def test_library_imports_sklearn_only_inside_to_sklearn():
    # scikit-learn is an optional extra: Mixture.to_sklearn imports it when called; nothing else ever does.
    importers = {(path.name, function) for path in PACKAGE.rglob("*.py") for function in sklearn_importers(path)}
    assert importers == {("mixture.py", "to_sklearn")}
