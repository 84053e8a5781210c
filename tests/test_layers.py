"""The package's import graph runs one way, config → data → model → training → evaluation → loop → analysis →
figures → entry points, and the modules that read stored results import no jax (STYLE.md: "a test can enforce
the graph")."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "icl_regression"

# Each module's stage; a module may import its own stage and earlier ones only. The store is a foundation, not a
# late stage: the training loop appends to it as it goes, and it knows nothing but the config and the name table.
STAGES = (
    ("foundation", {"configdict", "config", "names", "rng", "stopping", "store", "parallel"}),
    ("data and estimators", {"tasks", "estimators", "predictors", "laplace_accuracy"}),
    ("model", {"kernels", "kernels.common", "kernels.attention", "kernels.layer_norm", "kernels.mlp", "model"}),
    ("training step", {"training", "checkpoint"}),
    ("evaluation", {"evaluation"}),
    ("training loop", {"engine", "sweep"}),
    ("analysis", {"threshold", "dynamics", "results", "axes", "training_experiments", "trained", "interpolation",
                  "landscape", "smoothing", "laplace_comparison", "precision", "benchmarking", "roofline"}),
    ("figures", {"plotting", "plotting_experiments", "estimator_plots"}),
    ("entry points", {"cli", "transport"}),
)
STAGE_OF = {module: rank for rank, (_, modules) in enumerate(STAGES) for module in modules}

# Read by notebooks and figure scripts on machines without an accelerator stack: importing them must not import jax.
JAX_FREE = ("config", "names", "store", "stopping", "cli", "threshold", "dynamics", "results", "axes",
            "training_experiments", "plotting", "plotting_experiments", "estimator_plots", "transport")


def _module_name(path: Path) -> str:
    name = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    return name.removesuffix(".__init__")


def _package_imports(source: str) -> set[str]:
    """Every icl_regression module `source` imports, at module level or inside functions (`from icl_regression.X
    import Y` counts as X and, where Y is a module, X.Y)."""
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            assert not node.level, "the package imports absolutely: a relative import would escape this check"
            if node.module == "icl_regression":
                imported |= {alias.name for alias in node.names}
            elif node.module and node.module.startswith("icl_regression."):
                parent = node.module.split(".", 1)[1]
                imported |= {parent} | {f"{parent}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            imported |= {a.name.split(".", 1)[1] for a in node.names if a.name.startswith("icl_regression.")}
    return imported


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if _module_name(p) != "__init__"}


def test_every_module_has_a_stage():
    assert set(MODULES) == set(STAGE_OF), (f"place new modules in STAGES: {sorted(set(MODULES) - set(STAGE_OF))}; "
                                           f"gone: {sorted(set(STAGE_OF) - set(MODULES))}")


def _later_stage_imports(module: str, source: str) -> list[str]:
    imported = _package_imports(source) & set(STAGE_OF)
    return sorted(m for m in imported if STAGE_OF[m] > STAGE_OF[module])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_later_stage(module):
    later = _later_stage_imports(module, MODULES[module].read_text())
    assert not later, (f"{module} ({STAGES[STAGE_OF[module]][0]}) imports "
                       + ", ".join(f"{m} ({STAGES[STAGE_OF[m]][0]})" for m in later))


def test_the_check_sees_a_back_edge():
    """Both spellings of an import, at module level or inside a function, are seen."""
    source = MODULES["store"].read_text() + ("\n\ndef _late():\n    from icl_regression import results\n"
                                             "    import icl_regression.plotting\n"
                                             "    from icl_regression.kernels import mlp\n")
    assert _later_stage_imports("store", source) == ["kernels", "kernels.mlp", "plotting", "results"]


def test_library_defines_no_flags():
    """Flags live in experiments/ only; the library is called with values."""
    defining = [name for name, path in MODULES.items() if "flags.DEFINE_" in path.read_text()]
    assert not defining


def test_result_readers_import_no_jax():
    code = ("import sys\n" + "".join(f"import icl_regression.{m}\n" for m in JAX_FREE)
            + "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'jaxlib', 'flax', 'optax')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
