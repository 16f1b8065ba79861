"""Export a trained BERT4Rec for serving: padded histories in, top-k items out.

The exported graph is :class:`Bert4RecTopK`: it appends [MASK] to each
left-padded history (as ``next_item_scores`` does), scores the catalog, never
recommends padding or [MASK], optionally drops the items already in the
history (``candidates.py``: the rule the recommender and the evaluator use), and returns the ``k`` best vocabulary ids with their scores. A slot
with no candidate left (the history excluded all but fewer than ``k`` items)
holds id ``EMPTY_SLOT_ID`` (-1) and score ``-inf``: never a vocabulary id, so
``items[i - 2]`` cannot turn it into a real item by mistake. A serving process
needs only the ONNX file and ``item_vocab.json`` (copied beside it) to map ids
back to raw item ids; neither torch nor this package.

For a vector index, ``export_model`` also writes the encoder alone,
:class:`Bert4RecEncoder` (``encoder.onnx``: histories in, one query vector
each), and the item vectors (``item_vectors.safetensors``): a maximum inner
product search of a query over the item vectors, the history left out, gives
the top-k graph's items.

ONNX goes through torch's TorchScript-based exporter (``dynamo=False``), which
needs no extra package; the batch and history-length axes are dynamic.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .candidates import exclude, excluded_items
from .model_folder import history_excluded_by_default, local_folder
from .modeling_bert4rec import Bert4RecForMaskedItemPrediction

EXPORT_FORMATS = ("onnx",)
INPUT_NAMES = ["input_ids"]
OUTPUT_NAMES = ["item_ids", "scores"]
DEFAULT_OPSET = 17
EMPTY_SLOT_ID = -1  # item id of a top-k slot with no candidate left (its score is -inf)
ENCODER_FILE, VECTORS_FILE = "encoder.onnx", "item_vectors.safetensors"


class Bert4RecTopK(nn.Module):
    """``input_ids (B, L) int64`` left-padded histories (0 = padding, no [MASK])
    -> ``(item_ids (B, k) int64, scores (B, k) float32)``, best first.

    Args:
        model: the trained model (put in eval mode).
        k: items returned per history (at most the catalog size).
        exclude_history: drop items already in the history (their score
            becomes ``-inf``); a history that covers all but fewer than ``k``
            items returns id ``EMPTY_SLOT_ID`` (-1) and score ``-inf`` in the
            last slots.
    """

    def __init__(self, model: Bert4RecForMaskedItemPrediction, k: int = 10, exclude_history: bool = True):
        super().__init__()
        if isinstance(k, bool) or not isinstance(k, int) or not 0 < k <= model.config.num_items:
            raise ValueError(f"k must be an integer in [1, {model.config.num_items}] (the catalog size), got {k!r}")
        self.model = model.eval()
        self.k = k
        self.exclude_history = bool(exclude_history)

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.model.next_item_scores(input_ids)  # specials are already -inf
        if self.exclude_history:
            scores = exclude(scores, excluded_items(input_ids, self.model.config.vocab_size))
        top = scores.topk(self.k, dim=1)
        # which -inf column topk picks is arbitrary (and differs between PyTorch and onnxruntime)
        empty = top.values == float("-inf")
        return top.indices.masked_fill(empty, EMPTY_SLOT_ID), top.values


class Bert4RecEncoder(nn.Module):
    """``input_ids (B, L) int64`` left-padded histories (0 = padding, no [MASK])
    -> ``query_vectors (B, hidden + 1) float32``: ``model.next_item_vectors``,
    whose inner product with an item's vector (``model.item_vectors()``) is
    the item's score outside the history's input window."""

    def __init__(self, model: Bert4RecForMaskedItemPrediction):
        super().__init__()
        self.model = model.eval()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.next_item_vectors(input_ids).float()


def random_histories(vocab_size: int, length: int, rows: int = 2, seed: int = 0) -> torch.Tensor:
    """Left-padded random histories of ``length`` columns, the first row full and
    the others of random lengths: inputs to trace the graph and to check it."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(2, max(vocab_size, 3), (rows, length), generator=generator)
    lengths = torch.randint(1, length + 1, (rows,), generator=generator)
    lengths[0] = length
    return input_ids.masked_fill(torch.arange(length)[None, :] < (length - lengths)[:, None], 0)


def export_onnx(
    model: Bert4RecForMaskedItemPrediction,
    path: str | os.PathLike,
    k: int = 10,
    exclude_history: bool = True,
    opset_version: int = DEFAULT_OPSET,
) -> Path:
    """Writes ``Bert4RecTopK(model, k, exclude_history)`` as an ONNX file with
    dynamic batch and history-length axes; returns its path."""
    axes = {"input_ids": {0: "batch", 1: "length"}, "item_ids": {0: "batch"}, "scores": {0: "batch"}}
    return _write_graph(Bert4RecTopK(model, k=k, exclude_history=exclude_history), path, OUTPUT_NAMES, axes, opset_version)


def export_encoder_onnx(
    model: Bert4RecForMaskedItemPrediction, path: str | os.PathLike, opset_version: int = DEFAULT_OPSET
) -> Path:
    """Writes ``Bert4RecEncoder(model)`` (histories -> query vectors) as an ONNX file; returns its path."""
    axes = {"input_ids": {0: "batch", 1: "length"}, "query_vectors": {0: "batch"}}
    return _write_graph(Bert4RecEncoder(model), path, ["query_vectors"], axes, opset_version)


def _write_graph(module: nn.Module, path: str | os.PathLike, output_names: list[str], axes: dict, opset: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = module.model.config
    example = random_histories(config.vocab_size, max(config.max_seq_length - 1, 1))
    with warnings.catch_warnings():
        # the TorchScript-based exporter is deprecated in favour of the dynamo one (which needs onnxscript);
        # tracer warnings are about Python checks on shapes that hold for every input
        warnings.simplefilter("ignore")
        with torch.no_grad():
            torch.onnx.export(
                module,
                (example,),
                str(path),
                dynamo=False,
                input_names=INPUT_NAMES,
                output_names=output_names,
                dynamic_axes=axes,
                opset_version=opset,
            )
    return path


def export_item_vectors(model: Bert4RecForMaskedItemPrediction, path: str | os.PathLike) -> Path:
    """Writes the real items' vectors (``model.item_vectors()``, row ``i`` is
    vocabulary id ``i + 2``, i.e. entry ``i`` of ``item_vocab.json``'s items) as
    one float32 safetensors tensor, ``item_vectors``."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        vectors = model.item_vectors()[model.config.num_special_tokens :].float().contiguous()
    save_file({"item_vectors": vectors}, str(path), metadata={"first_vocabulary_id": str(model.config.num_special_tokens)})
    return path


def export_model(
    model_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    format: str = "onnx",
    k: int = 10,
    exclude_history: bool | None = None,
    opset_version: int = DEFAULT_OPSET,
) -> dict[str, Any]:
    """Exports a saved model folder to ``output_dir``: ``model.onnx``, the item
    vocabulary (``item_vocab.json``) and ``export_config.json`` (inputs,
    outputs, k, padding id). ``output_dir`` may be ``model_dir`` itself.
    ``exclude_history=None`` follows the model, as ``Bert4RecRecommender`` does
    (``model_folder.history_excluded_by_default``). Returns the export description."""
    if format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {EXPORT_FORMATS}, got {format!r}")
    model_dir, output_dir = Path(local_folder(model_dir)), Path(output_dir)
    model = Bert4RecForMaskedItemPrediction.from_pretrained(model_dir).eval()
    if exclude_history is None:
        exclude_history = history_excluded_by_default(model.config.repeat_share)
    path = export_onnx(
        model, output_dir / "model.onnx", k=k, exclude_history=exclude_history, opset_version=opset_version
    )
    export_encoder_onnx(model, output_dir / ENCODER_FILE, opset_version=opset_version)
    export_item_vectors(model, output_dir / VECTORS_FILE)
    _copy_vocabulary(model_dir, output_dir)
    description = {
        "format": format,
        "file": path.name,
        "opset_version": opset_version,
        "inputs": {"input_ids": "int64 (batch, length): left-padded vocabulary ids, 0 = padding, no [MASK]"},
        "outputs": {
            "item_ids": f"int64 (batch, k): vocabulary ids, best first; {EMPTY_SLOT_ID} = no candidate left",
            "scores": "float32 (batch, k): -inf where no candidate is left",
        },
        "empty_slot_id": EMPTY_SLOT_ID,
        "encoder": {
            "file": ENCODER_FILE,
            "outputs": {"query_vectors": "float32 (batch, hidden + 1): the state scored for the next item, then 1"},
        },
        "item_vectors": {
            "file": VECTORS_FILE,
            "tensor": "item_vectors: float32 (num_items, hidden + 1), item embedding (with its features, when the model "
            "has item features) then output bias; row i is "
            "vocabulary id i + 2 (item_vocab.json's items in order)",
            "score": "query_vectors @ item_vectors.T, plus the learned seen-item offset "
            f"({float(model.head.seen_item_bias) if model.head.seen_item_bias is not None else 0.0}) "
            "for the items of the history's last max_seq_length - 1",
        },
        "k": k,
        "exclude_history": exclude_history,
        "pad_token_id": model.config.pad_token_id,
        "max_seq_length": model.config.max_seq_length,
        "vocab_size": model.config.vocab_size,
        "source": str(model_dir),
    }
    (output_dir / "export_config.json").write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
    return description


def _copy_vocabulary(model_dir: Path, output_dir: Path) -> None:
    """``item_vocab.json`` beside the exported file; already there when the
    export goes into the model folder itself (copying a file onto itself fails)."""
    vocabulary, target = model_dir / "item_vocab.json", output_dir / "item_vocab.json"
    if vocabulary.is_file() and not (target.exists() and os.path.samefile(vocabulary, target)):
        shutil.copyfile(vocabulary, target)


def verify_onnx(
    path: str | os.PathLike,
    model: Bert4RecForMaskedItemPrediction,
    input_ids: torch.Tensor,
    exclude_history: bool = True,
) -> dict[str, Any]:
    """Runs the ONNX file with onnxruntime and PyTorch on the same histories;
    returns the share of rows whose top-k agree (the same ids in the slots
    PyTorch fills, and the same slots left empty) and the largest score
    difference."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    item_ids, scores = session.run(OUTPUT_NAMES, {"input_ids": input_ids.numpy().astype(np.int64)})
    k = item_ids.shape[1]
    with torch.no_grad():
        expected_ids, expected_scores = Bert4RecTopK(model, k=k, exclude_history=exclude_history)(input_ids)
    expected_ids, expected_scores = expected_ids.numpy(), expected_scores.numpy()
    finite = np.isfinite(expected_scores)
    same = ((item_ids == expected_ids) | ~finite) & (np.isfinite(scores) == finite)
    return {
        "rows": int(input_ids.shape[0]),
        "k": k,
        "same_top_k_rows": float(same.all(1).mean()),
        "max_abs_score_difference": float(np.abs(scores[finite] - expected_scores[finite]).max(initial=0.0)),
    }


__all__ = [
    "EMPTY_SLOT_ID",
    "Bert4RecEncoder",
    "Bert4RecTopK",
    "export_encoder_onnx",
    "export_item_vectors",
    "export_model",
    "export_onnx",
    "random_histories",
    "verify_onnx",
]
