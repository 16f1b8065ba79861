"""What a run leaves behind besides the weights: metrics table, model card, plot."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ..configuration_bert4rec import Bert4RecConfig

METRIC_ORDER = ("hit", "ndcg", "mrr", "precision")
# Hub metadata at the top of every model card this package writes.
MODEL_CARD_METADATA = """---
library_name: transformers
tags:
- bert4rec
- recommendation
- sequential-recommendation
pipeline_tag: other
---
"""


def _metric_names(metrics: Mapping[str, float]) -> list[str]:
    """Ranking metric names (without split prefix) in a stable, readable order."""
    names = {key.split("_", 1)[1] if "_" in key else key for key in metrics}
    names = {name for name in names if name.split("@")[0] in METRIC_ORDER}

    def order(name: str) -> tuple[int, int]:
        base, _, k = name.partition("@")
        return METRIC_ORDER.index(base), int(k) if k else 10**9

    return sorted(names, key=order)


def metrics_table(results: Mapping[str, Mapping[str, float]]) -> str:
    """A Markdown table: one row per metric, one column per split."""
    splits = list(results)
    names = _metric_names({k: v for split in results.values() for k, v in split.items()})
    lines = ["| metric | " + " | ".join(splits) + " |", "|---|" + "---:|" * len(splits)]
    for name in names:
        cells = []
        for split in splits:
            value = results[split].get(f"{split}_{name}", results[split].get(name))
            cells.append("" if value is None else f"{value:.4f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_model_card(
    output_dir: str | os.PathLike,
    config: Mapping[str, Any],
    results: Mapping[str, Mapping[str, float]],
    data_summary: Mapping[str, Any],
    evaluation: str,
    trained: Mapping[str, Any],
) -> Path:
    """README.md of the model folder: what was trained on what, and how well.

    ``trained`` is what training actually ran (epochs, steps): ``max_steps``,
    ``time_budget`` or early stopping can end it long before the configured
    ``epochs``, so the card shows both, each labelled."""
    model_keys = Bert4RecConfig.run_settings()
    training_keys = (
        "epochs", "max_steps", "time_budget", "stopping_step", "train_batch_size", "learning_rate", "weight_decay",
        "warmup_steps", "seed",
    )  # fmt: skip
    hyper = "\n".join(f"| {key} | {config.get(key)} |" for key in (*model_keys, *training_keys))
    ran = "\n".join(f"| {key} | {value} |" for key, value in trained.items())
    data = "\n".join(f"- {key}: {value}" for key, value in data_summary.items())
    card = f"""{MODEL_CARD_METADATA}
# BERT4Rec on {config.get("dataset")}

A [BERT4Rec](https://arxiv.org/abs/1904.06690) sequential recommender trained with
[bert4rec-hf](https://pypi.org/project/bert4rec-hf/). The folder holds the weights
(`model.safetensors`), the model code (loadable with `trust_remote_code=True`) and the
item vocabulary (`item_vocab.json`, plain JSON).

```python
from bert4rec_hf import Bert4RecForMaskedItemPrediction, ItemTokenizer
model = Bert4RecForMaskedItemPrediction.from_pretrained("<this folder or repo>")
tokenizer = ItemTokenizer.from_pretrained("<this folder or repo>")
```

## Data and split
{data}
- split: leave-one-out in time order (validation: the second-to-last item of each user,
  test: the last item; training: everything before)

## Evaluation
{evaluation}

{metrics_table(results)}

## Training run
What training actually ran (it can stop before the configured `epochs`: `max_steps`,
`time_budget` or early stopping after `stopping_step` evaluations without improvement).

| name | value |
|---|---|
{ran}

## Hyper-parameters (configured)
| name | value |
|---|---|
{hyper}
"""
    path = Path(output_dir) / "README.md"
    path.write_text(card, encoding="utf-8")
    return path


def plot_training_history(log_history: Sequence[Mapping[str, Any]], path: str | os.PathLike, metric: str) -> Path:
    """PNG of the training loss and the validation metric per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = [(entry["epoch"], entry["loss"]) for entry in log_history if "loss" in entry and "epoch" in entry]
    evals = [(e["epoch"], e[f"eval_{metric}"]) for e in log_history if f"eval_{metric}" in e and "epoch" in e]
    figure, loss_axis = plt.subplots(figsize=(7, 4))
    if losses:
        loss_axis.plot(*zip(*losses, strict=True), color="tab:blue", label="training loss")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("training loss", color="tab:blue")
    metric_axis = loss_axis.twinx()
    if evals:
        metric_axis.plot(*zip(*evals, strict=True), color="tab:orange", marker="o", label=f"validation {metric}")
    metric_axis.set_ylabel(f"validation {metric}", color="tab:orange")
    figure.suptitle("BERT4Rec training")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Writes ``data`` as JSON, creating missing parent folders (an ``--output``
    in a new folder must not throw away the evaluation that produced it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    return path


def yaml_text(data: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(data), sort_keys=True)


def write_yaml(path: str | os.PathLike, data: Mapping[str, Any]) -> Path:
    path = Path(path)
    path.write_text(yaml_text(data), encoding="utf-8")
    return path


def write_atomically(path: str | os.PathLike, text: str) -> Path:
    """Writes ``text`` beside ``path`` and renames it there: a kill leaves the old
    file or the new one, never half of it (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
    return path
