"""The layering rules: the math layer never imports pyspark, and ``import sparkgmm`` stays free of it."""

import ast
import json
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


# Every top-level module: the math, the model, the config and the command line, and the jobs' entry points. The
# command line loads sparkgmm.spark.failures with itself (it reads Spark's errors from their text, without pyspark)
# and the rest of sparkgmm.spark only once the flags are good, so that a bad flag costs no JVM; sparkgmm loads the
# Spark estimator on first access. sparkgmm.__main__ runs the command line when imported: a bad flag stands for it.
CORE_MODULES = ["sparkgmm", *sorted(f"sparkgmm.{p.stem}" for p in PACKAGE.glob("*.py")
                                    if p.stem not in ("__init__", "__main__", "cli"))]
ENTRY_POINTS = sorted(str(p) for p in (PACKAGE.parent / "jobs").glob("*.py"))
CLI_LOADS = {"sparkgmm.spark", "sparkgmm.spark.failures"}

# Imports each target given in turn (a module, or a script run under another name than __main__, so that it only
# imports) and prints, for each, the modules of pyspark, py4j and sparkgmm.spark that its import added; then what a
# command line with a bad flag adds, and its exit code.
IMPORT_GRAPH = """
import importlib, io, json, runpy, sys
from contextlib import redirect_stderr

def spark_side():
    return {name for name in sys.modules
            if name.split(".")[0] in ("pyspark", "py4j") or name.split(".")[:2] == ["sparkgmm", "spark"]}

added = {}
for target in sys.argv[1:]:
    before = spark_side()
    if target.endswith(".py"):
        runpy.run_path(target, run_name="imported")
    else:
        importlib.import_module(target)
    added[target] = sorted(spark_side() - before)
before = spark_side()
with redirect_stderr(io.StringIO()):
    code = importlib.import_module("sparkgmm.cli").main(["fit", "--no-such-flag"])
added["a bad flag"] = sorted(spark_side() - before)
print(json.dumps({"added": added, "exit": code}))
"""


def test_math_layer_never_imports_pyspark():
    math_files = [p for p in PACKAGE.glob("*.py")]
    assert {p.name for p in math_files} >= {"gaussian.py", "stats.py", "mixture.py", "em.py", "init.py", "config.py",
                                            "cli.py"}
    # No pyspark import written in any of them, not even inside a function.
    offenders = {p.name for p in math_files if any(m.split(".")[0] == "pyspark" for m in imported_modules(p))}
    assert offenders == set()
    # Nor one reached through other modules, at any depth: what importing each loads, in one fresh interpreter.
    # Each import there finds none of pyspark or sparkgmm.spark loaded (all that came before added nothing), so it
    # shows what the module loads in a fresh interpreter of its own; the command line and the entry points come last.
    assert {pathlib.Path(path).name for path in ENTRY_POINTS} == {
        "fit_gmm.py", "predict_gmm.py", "select_k_gmm.py", "update_gmm.py"}
    assert {"sparkgmm.mixture", "sparkgmm.em", "sparkgmm.init", "sparkgmm.config"} <= set(CORE_MODULES)
    out = subprocess.run([sys.executable, "-c", IMPORT_GRAPH, *CORE_MODULES, "sparkgmm.cli", *ENTRY_POINTS],
                         capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    result = json.loads(out.stdout)
    added = result["added"]
    assert {module: added[module] for module in CORE_MODULES if added[module]} == {}
    assert set(added["sparkgmm.cli"]) <= CLI_LOADS
    assert {path: added[path] for path in ENTRY_POINTS if added[path]} == {}
    assert added["a bad flag"] == [] and result["exit"] == 2


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
    # scikit-learn is an optional extra: Mixture.to_sklearn and bayesian.to_sklearn import it when called; nothing
    # else ever does.
    importers = {(path.name, function) for path in PACKAGE.rglob("*.py") for function in sklearn_importers(path)}
    assert importers == {("mixture.py", "to_sklearn"), ("bayesian.py", "to_sklearn")}
