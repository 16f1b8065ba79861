"""What a model folder is: where it lives, the device it loads on, and its model card.

Training (the run's card, with its metrics) and inference (a card for a folder
without one) both write cards here, so a card looks the same whoever wrote it;
this module imports neither side, and inference never imports training.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .configuration_bert4rec import Bert4RecConfig
from .data.collators import MaskingArguments
from .tokenization_bert4rec import VOCAB_FILE_NAME, ItemTokenizer

METRIC_ORDER = ("hit", "ndcg", "mrr", "precision")
# Below this share of repeat interactions in the training log, the recommender leaves each
# user's history out by default.
REPEAT_SHARE_THRESHOLD = 0.01
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


def history_excluded_by_default(repeat_share: float | None) -> bool:
    """The recommender's default ``exclude_history`` for a model whose training log had
    ``repeat_share`` repeat interactions (``config.repeat_share``): leave the user's
    history out where people (almost) never come back to an item, keep it where they
    do. ``None`` (a folder saved before it was recorded): leave it out, as always."""
    return repeat_share is None or repeat_share < REPEAT_SHARE_THRESHOLD


def history_default_line(repeat_share: float | None) -> str:
    """One sentence for a model card: the recommender's default and why."""
    if repeat_share is None:
        return (
            "The training log's repeat share was not recorded: `Bert4RecRecommender` leaves each user's "
            "history out of the recommendations by default (`exclude_history=False` keeps it)."
        )
    excluded = history_excluded_by_default(repeat_share)
    return (
        f"{repeat_share:.1%} of the training interactions repeat an item the user already had, "
        + ("below" if excluded else "at or above")
        + f" {REPEAT_SHARE_THRESHOLD:.0%}: `Bert4RecRecommender` "
        + ("leaves each user's history out" if excluded else "keeps each user's history items as candidates")
        + " by default (`exclude_history=" + ("False` keeps them" if excluded else "True` leaves them out")
        + "; `bert4rec recommend --exclude-history`)."
    )


def with_baselines(
    results: Mapping[str, Mapping[str, float]], baselines: Mapping[str, Mapping[str, Mapping[str, float]]]
) -> dict[str, Mapping[str, float]]:
    """The model's splits, then each baseline's test metrics as a column ``<name> (test)``."""
    columns = dict(results)
    for name, metrics in baselines.items():
        columns[f"{name} (test)"] = {key.removeprefix("test_"): value for key, value in metrics["test"].items()}
    return columns


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
    baselines: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
    repeat_share: float | None = None,
) -> Path:
    """README.md of the model folder: what was trained on what, and how well.

    ``trained`` is what training actually ran (epochs, steps): ``max_steps``,
    ``time_budget`` or early stopping can end it long before the configured
    ``epochs``, so the card shows both, each labelled. ``baselines``' test
    metrics are columns beside the model's; ``repeat_share`` (the training
    log's) says whether the recommender keeps history items by default."""
    model_keys = Bert4RecConfig.run_settings()
    training_keys = (
        "epochs", "max_steps", "time_budget", "stopping_step", "train_batch_size", "learning_rate", "weight_decay",
        "warmup_steps", "seed",
    )  # fmt: skip
    keys = (*model_keys, *MaskingArguments.keys(), *training_keys)
    hyper = "\n".join(f"| {key} | {config.get(key)} |" for key in keys)
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

## Evaluation
{evaluation}

{metrics_table(with_baselines(results, baselines or {}))}
{_baselines_note(baselines or {})}
## Recommending
{history_default_line(repeat_share)}

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


def _baselines_note(baselines: Mapping[str, Any]) -> str:
    if not baselines:
        return ""
    return (
        f"\nBaselines ({', '.join(baselines)}) are ranked on the same users against the same candidates; "
        "popularity counts each training interaction once.\n"
    )


def default_model_card(config: Any, tokenizer: ItemTokenizer) -> str:
    """A model card for a folder without one: what it holds and how to query it,
    with and without this package (leaving the history out only where the
    recommender's default does)."""
    repeat_share = getattr(config, "repeat_share", None)
    leave_out = (
        'scores[0, history[0]] = float("-inf")             # do not recommend what was seen'
        if history_excluded_by_default(repeat_share)
        else "# history items stay candidates: the training log had repeat consumption"
    )
    return f"""{MODEL_CARD_METADATA}
# BERT4Rec sequential recommender

A [BERT4Rec](https://arxiv.org/abs/1904.06690) model ({tokenizer.num_items} items, hidden size
{config.hidden_size}, {config.n_layers} layers, histories of up to {config.max_seq_length - 1} items)
saved with [bert4rec-hf](https://pypi.org/project/bert4rec-hf/). The folder holds the weights
(`model.safetensors`), the model code (`trust_remote_code=True`) and the item vocabulary
(`{VOCAB_FILE_NAME}`: plain JSON, index `i + 2` is `items[i]`; 0 is padding, 1 is `[MASK]`).

## With bert4rec-hf

{history_default_line(repeat_share)}

```python
from bert4rec_hf import Bert4RecRecommender
recommender = Bert4RecRecommender.from_pretrained("<this folder or repo>")
print(recommender.recommend(["<item id>", "<item id>"], k=10))
```

## Without it

```python
import json, torch
from huggingface_hub import hf_hub_download
from transformers import AutoModelForMaskedLM

repo = "<this folder or repo>"
model = AutoModelForMaskedLM.from_pretrained(repo, trust_remote_code=True).eval()
with open(hf_hub_download(repo, "{VOCAB_FILE_NAME}")) as handle:  # a local folder: open(f"{{repo}}/{VOCAB_FILE_NAME}")
    items = json.load(handle)["items"]
index = {{item: i + 2 for i, item in enumerate(items)}}
history = torch.tensor([[index[item] for item in ["<item id>", "<item id>"]]])
scores = model.next_item_scores(history)          # (1, vocab_size); padding and [MASK] are -inf
{leave_out}
print([items[i - 2] for i in scores.topk(10).indices[0].tolist()])
```
"""


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` checked by placing an empty tensor there, so a misspelt name or
    a missing GPU fails at once with a one-line ``ValueError`` rather than as a
    torch traceback after the model has loaded; ``None``: CUDA when available."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.empty(0, device=device).device
    except (RuntimeError, AssertionError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"device {str(device)!r} cannot be used: {reason}") from None


def local_folder(path: str | os.PathLike) -> str:
    """``path`` with ``~`` expanded when it reads as a local folder, else as
    given (a Hub repository). A Hub id is ``name`` or ``owner/name``, so a
    leading ``/ . ~``, a second ``/`` or a Windows separator marks a local path;
    one that does not exist raises "no such folder" rather than reaching the
    Hub client, whose error is about malformed repository names."""
    text = os.fspath(path)
    if not (text.startswith(("/", ".", "~")) or text.count("/") > 1 or (os.sep != "/" and os.sep in text)):
        return text
    folder = os.path.expanduser(text)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"no such folder: {text}")
    return folder


__all__ = [
    "MODEL_CARD_METADATA",
    "REPEAT_SHARE_THRESHOLD",
    "default_model_card",
    "history_default_line",
    "history_excluded_by_default",
    "local_folder",
    "metrics_table",
    "resolve_device",
    "with_baselines",
    "write_model_card",
]
