"""Several runs' scores averaged (issue 24): how much the runs of one recipe disagree.

Ranks each test item by the mean of several saved models' scores, with the candidates,
tie rule and split ``bert4rec evaluate`` uses for one model (the first folder's
run_config.yaml prepares the data; ``--mode``: full, pop100 or uni100), and every model
alone beside it. Where the mean ranks far better than each model, the runs' errors are
their own (seeds), and a single model has that much to gain from what reduces them.

    python benchmarks/score_ensemble.py MODEL_DIR MODEL_DIR [...] --mode full --output ensemble.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bert4rec_hf import Bert4RecForMaskedItemPrediction, DataCollatorForNextItemPrediction, ItemTokenizer
from bert4rec_hf.evaluation import ranking_metrics
from bert4rec_hf.training.config import load_config
from bert4rec_hf.training.pipeline import build_evaluator, prepare_data, saved_run_config

BATCH = 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path, nargs="+", help="saved model folders of one data set and split")
    parser.add_argument("--mode", default="full", choices=["full", "pop100", "uni100"])
    parser.add_argument("--output", type=Path, help="also write the metrics to this JSON file")
    args = parser.parse_args()
    config = load_config(None, [saved_run_config(args.models[0])], {"eval_mode": args.mode, "exclude_history": False})
    models = [Bert4RecForMaskedItemPrediction.from_pretrained(folder).eval() for folder in args.models]
    data = prepare_data(config, tokenizer=ItemTokenizer.from_pretrained(args.models[0]))
    evaluator = build_evaluator(config, data.processed)
    collate = DataCollatorForNextItemPrediction(max_seq_length=models[0].config.max_seq_length, whole_history=True)
    test = data.processed.splits["test"]
    names = [*(f"model {k}: {folder}" for k, folder in enumerate(args.models, 1)), "mean of the scores"]
    ranks = {name: [] for name in names}
    for start in range(0, len(test), BATCH):
        batch = collate(list(test.select(range(start, min(start + BATCH, len(test))))))
        targets, history = batch["labels"][:, -1], batch["history_ids"]
        scores = [model.next_item_scores(history) for model in models]
        for name, score in zip(names, [*scores, torch.stack(scores).mean(0)], strict=True):
            ranks[name].append(evaluator.rank(score, batch["input_ids"], targets, history=history))
    results = {name: ranking_metrics(torch.cat(found), config["topk"]) for name, found in ranks.items()}
    for name, metrics in results.items():
        print(f"| {name} | {args.mode} | {metrics['ndcg@10']:.4f} / {metrics['hit@10']:.4f} |")
    if args.output:
        args.output.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
