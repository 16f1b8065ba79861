"""A saved folder must load where bert4rec_hf is not importable (trust_remote_code)."""

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import bert4rec_hf

from .helpers import tiny_model


def _relative_imports(module: str, seen: set[str] | None = None) -> set[str]:
    """The package's files a module imports relatively, recursively (``from .x import y``)."""
    seen = set() if seen is None else seen
    tree = ast.parse((Path(bert4rec_hf.__file__).parent / module).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module and f"{node.module}.py" not in seen:
            seen.add(f"{node.module}.py")
            _relative_imports(f"{node.module}.py", seen)
    return seen


FEATURES = [
    {"name": "genre", "kind": "token_seq", "vocabulary": ["a", "b", "c"], "length": 2},
    {"name": "vector", "kind": "float_seq", "dim": 3, "mean": [0.0] * 3, "std": [1.0] * 3},
]


@pytest.mark.parametrize("item_features", [None, FEATURES], ids=["id-only", "with-item-features"])
def test_saved_folder_loads_without_the_package(tmp_path, item_features):
    model = tiny_model(item_features=item_features)
    if item_features:  # a feature table the remote code must read back from model.safetensors
        generator = torch.Generator().manual_seed(1)
        model.bert4rec.embeddings.item_features.set_items(
            2, torch.randint(0, 4, (50, 2), generator=generator), torch.randn(50, 3, generator=generator)
        )
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_bert4rec.Bert4RecConfig",
        "AutoModel": "modeling_bert4rec.Bert4RecModel",
        "AutoModelForMaskedLM": "modeling_bert4rec.Bert4RecForMaskedItemPrediction",
    }
    needed = _relative_imports("modeling_bert4rec.py")
    # the model's code is the paper's model, its item features, scorer and losses, and the configuration:
    # nothing of training
    assert needed == {"configuration_bert4rec.py", "features_bert4rec.py", "losses_bert4rec.py", "scoring_bert4rec.py"}
    assert {p.name for p in tmp_path.iterdir()} >= {"modeling_bert4rec.py", *needed}
    histories = torch.randint(2, 52, (4, 9), generator=torch.Generator().manual_seed(0))
    expected = model.next_item_scores(histories)
    torch.save(histories, tmp_path / "histories.pt")
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["bert4rec_hf"] = None  # any import of the package now fails
        import torch
        from transformers import AutoModel, AutoModelForMaskedLM
        model = AutoModelForMaskedLM.from_pretrained({str(tmp_path)!r}, trust_remote_code=True).eval()
        base = AutoModel.from_pretrained({str(tmp_path)!r}, trust_remote_code=True)
        assert type(model).__name__ == "Bert4RecForMaskedItemPrediction", type(model)
        assert type(base).__name__ == "Bert4RecModel", type(base)
        assert not type(model).__module__.startswith("bert4rec_hf")
        histories = torch.load({str(tmp_path / "histories.pt")!r})
        torch.save(model.next_item_scores(histories), {str(tmp_path / "scores.pt")!r})
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    torch.testing.assert_close(torch.load(tmp_path / "scores.pt"), expected)
