"""What a run writes besides the model folder's card (``model_folder``): files and the training plot."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml


def validation_curve(log_history: Sequence[Mapping[str, Any]], metric: str) -> list[dict[str, float]]:
    """Every validation of a run: its step, epoch and ``metric``. ``metrics.json`` keeps it
    so a reader can tell a run that had levelled off from one still climbing when it stopped."""
    key = f"eval_{metric}"
    return [
        {"step": entry["step"], "epoch": entry["epoch"], metric: entry[key]}
        for entry in log_history
        if key in entry and "epoch" in entry
    ]


def plot_training_history(log_history: Sequence[Mapping[str, Any]], path: str | os.PathLike, metric: str) -> Path:
    """PNG of the training loss and the validation metric per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = [(entry["epoch"], entry["loss"]) for entry in log_history if "loss" in entry and "epoch" in entry]
    evals = [(point["epoch"], point[metric]) for point in validation_curve(log_history, metric)]
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
