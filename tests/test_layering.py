"""Imports run one way: inference (recommender, export, model folders) never imports training."""

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
    assert "bert4rec_hf.training.config" in imported_modules(PACKAGE / "quick_start.py")  # the check sees imports
    imported = imported_modules(PACKAGE / file_name)
    training = sorted(name for name in imported if any(name.startswith(f"bert4rec_hf.{part}") for part in TRAINING))
    assert training == []
