"""Imports run one way: data and model at the bottom, training above them, inference beside
training (never importing it), the facade (``quick_start``) and the CLI on top."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bert4rec_hf"
INFERENCE = ("recommendation.py", "export.py", "model_folder.py", "modeling_bert4rec.py", "tokenization_bert4rec.py")
TRAINING = ("training", "quick_start", "finetuning", "commands", "cli")


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, relative imports resolved against the package."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = path.parent.relative_to(PACKAGE.parent).parts  # ("bert4rec_hf", ...)
                parent = package[: len(package) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("file_name", INFERENCE)
def test_inference_modules_never_import_training(file_name):
    assert "bert4rec_hf.training.config" in imported_modules(PACKAGE / "training" / "pipeline.py")  # the check sees imports
    imported = imported_modules(PACKAGE / file_name)
    training = sorted(name for name in imported if any(name.startswith(f"bert4rec_hf.{part}") for part in TRAINING))
    assert training == []


def test_readers_read_files_and_never_import_the_registry():
    """The registry resolves names (and imports the readers); the readers only read files."""
    imported = imported_modules(PACKAGE / "data" / "readers.py")
    assert "bert4rec_hf.data.readers" in imported_modules(PACKAGE / "data" / "registry.py")  # the check sees imports
    assert sorted(name for name in imported if name.startswith("bert4rec_hf.data.registry")) == []


@pytest.mark.parametrize(
    "path", sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")), ids=str
)
def test_nothing_below_the_facade_imports_it(path):
    """Only the package's ``__init__`` and the CLI sit above ``quick_start``; the pipeline,
    tuning and everything else import ``training.pipeline`` or lower."""
    if path == "__init__.py" or path in ("quick_start.py", "cli.py") or path.startswith("commands/"):
        return
    assert "bert4rec_hf.quick_start" not in imported_modules(PACKAGE / path)


def test_quick_start_is_a_facade_of_re_exports():
    """quick_start.py holds a docstring, imports and ``__all__``, nothing else; every name it
    exports is the pipeline's (or the configuration's) own object."""
    import bert4rec_hf.quick_start as facade
    from bert4rec_hf.training import config, pipeline

    tree = ast.parse((PACKAGE / "quick_start.py").read_text())
    for node in tree.body:
        docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        exports = isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["__all__"]
        assert docstring or exports or isinstance(node, (ast.Import, ast.ImportFrom)), ast.dump(node)[:80]
    for name in facade.__all__:
        assert getattr(facade, name) is getattr(pipeline, name, getattr(config, name, None)), name
    assert set(pipeline.__all__) <= set(facade.__all__)
