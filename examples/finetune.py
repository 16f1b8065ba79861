"""Fine-tune a saved BERT4Rec on a newer interaction log that holds items it has never seen.

    # your checkpoint (a folder written by `bert4rec train` / save_pretrained) and your new log
    python examples/finetune.py --checkpoint outputs/ml-100k --log new_interactions.csv --output-dir outputs/finetuned

    # demo on MovieLens-100K: an "old" model is trained on the interactions before the
    # 80% time quantile, then fine-tuned on the whole log (66 movies appear only after the cut)
    python examples/finetune.py --demo-ml-100k --output-dir outputs/ml-100k-finetuned

Steps: load model + vocabulary, append the new log's unseen items to the vocabulary and
grow the model (`extend_vocabulary`: old rows unchanged, new rows initialised like a fresh
model's), split the new log leave-one-out, evaluate the old model, fine-tune with the HF
Trainer, evaluate again, and save a hub-ready folder (weights + code, item_vocab.json,
model card, metrics.json).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import torch
from transformers import TrainingArguments, set_seed

from bert4rec_hf import (
    Bert4RecForMaskedItemPrediction,
    Bert4RecTrainer,
    DataCollatorForMaskedItemPrediction,
    DataCollatorForNextItemPrediction,
    ItemTokenizer,
    RankingEvaluator,
    load_interactions,
    read_interactions,
    run_bert4rec,
)
from bert4rec_hf.data import DATASETS, build_sequences, leave_one_out
from bert4rec_hf.finetuning import extend_vocabulary
from bert4rec_hf.model_folder import default_model_card, metrics_table
from bert4rec_hf.recommendation import Bert4RecRecommender
from bert4rec_hf.training.pipeline import check_output_dir, remove_checkpoints


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="saved model folder (model + item_vocab.json) trained on the old log")
    parser.add_argument("--log", help="the new interaction log: a file, or a registered data set name")
    parser.add_argument("--output-dir", required=True, help="where the fine-tuned model folder goes")
    parser.add_argument("--epochs", type=float, default=20)
    parser.add_argument("--max-steps", type=int, default=-1, help="> 0 overrides --epochs")
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--eval-batch-size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--overwrite", action="store_true", help="replace a model already in --output-dir")
    demo = parser.add_argument_group("demo on ml-100k (builds the old checkpoint first)")
    demo.add_argument("--demo-ml-100k", action="store_true", help="split ml-100k by time into old and new logs")
    demo.add_argument("--old-fraction", type=float, default=0.8, help="share of interactions in the old log")
    demo.add_argument("--max-users", type=int, help="keep only this many users (a quick run)")
    demo.add_argument("--old-epochs", type=int, default=50)
    demo.add_argument("--hidden-size", type=int, default=64)
    demo.add_argument("--max-seq-length", type=int, default=50)
    args = parser.parse_args()
    if args.demo_ml_100k == bool(args.checkpoint or args.log):
        parser.error("give either --checkpoint and --log, or --demo-ml-100k")
    if not args.demo_ml_100k and not (args.checkpoint and args.log):
        parser.error("--checkpoint and --log go together")
    return args


def make_demo(args: argparse.Namespace, work_dir: Path) -> tuple[str, str]:
    """Writes ml-100k's old part (before the time cut) and whole log as CSV, trains
    the old checkpoint on the old part, and returns (checkpoint folder, new log)."""
    table = load_interactions("ml-100k").select(["user_id", "item_id", "timestamp"])
    if args.max_users:
        users = pc.unique(table["user_id"])[: args.max_users]
        table = table.filter(pc.is_in(table["user_id"], value_set=users))
    cut = float(np.quantile(table["timestamp"].to_numpy(), args.old_fraction))
    old = table.filter(pc.less(table["timestamp"], cut))
    work_dir.mkdir(parents=True, exist_ok=True)
    old_log, new_log = work_dir / "old_log.csv", work_dir / "new_log.csv"
    pacsv.write_csv(old, old_log)
    pacsv.write_csv(table, new_log)
    unseen = set(pc.unique(table["item_id"]).to_pylist()) - set(pc.unique(old["item_id"]).to_pylist())
    print(f"old log: {old.num_rows} interactions; new log: {table.num_rows}; {len(unseen)} items only in the new log")
    checkpoint = work_dir / "old-model"
    run_bert4rec(
        "ml-100k-old",
        config_dict={
            "data_path": str(old_log),
            "epochs": args.old_epochs,
            "hidden_size": args.hidden_size,
            "inner_size": 4 * args.hidden_size,
            "max_seq_length": args.max_seq_length,
            "seed": args.seed,
            "train_batch_size": args.batch_size,
            "eval_batch_size": args.eval_batch_size,
        },  # fmt: skip
        output_dir=checkpoint,
        overwrite=True,  # the demo's own scratch model, rebuilt on every run
    )
    return str(checkpoint), str(new_log)


def read_log(log: str):
    return load_interactions(log) if log in DATASETS else read_interactions(log)


def new_item_hits(recommender: Bert4RecRecommender, histories: list, targets: list, new_items: set, k: int = 10):
    """Among test users whose next item is one the old model did not know: how many,
    and the share whose top-k holds it (history items kept, as in the evaluation)."""
    rows = [i for i, target in enumerate(targets) if target in new_items]
    if not rows:
        return 0, float("nan")
    recs = recommender.recommend([histories[i] for i in rows], k=k, exclude_history=False, return_scores=False)
    return len(rows), float(np.mean([targets[i] in items for i, items in zip(rows, recs, strict=True)]))


def main() -> None:
    args = parse_args()
    output_dir = Path(args.output_dir)
    check_output_dir(output_dir, args.overwrite)  # e.g. --output-dir the --checkpoint itself
    if args.demo_ml_100k:  # the old checkpoint and the logs go beside the output folder, which stays hub-ready
        checkpoint, log = make_demo(args, output_dir.with_name(f"{output_dir.name}-demo"))
    else:
        checkpoint, log = args.checkpoint, args.log

    model = Bert4RecForMaskedItemPrediction.from_pretrained(checkpoint)
    tokenizer = ItemTokenizer.from_pretrained(checkpoint)
    sequences = build_sequences(read_log(log))
    old_items = set(tokenizer.items)
    added = extend_vocabulary(model, tokenizer, pc.list_flatten(sequences.data.column("item_ids")))
    new_items = set(tokenizer.items) - old_items
    print(f"vocabulary: {len(old_items)} items + {added} new = {tokenizer.num_items}")

    max_seq_length = model.config.max_seq_length
    splits, tokenizer, report = leave_one_out(sequences, tokenizer=tokenizer, max_seq_length=max_seq_length)
    set_seed(args.seed)
    training_args = TrainingArguments(
        output_dir=str(output_dir / "checkpoints"),
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
        learning_rate=args.learning_rate,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.eval_batch_size,
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model="ndcg@10",
        save_total_limit=1,
        seed=args.seed,
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
    )
    trainer = Bert4RecTrainer(
        model=model,
        args=training_args,
        train_dataset=splits["train"],
        eval_dataset=splits["validation"],
        data_collator=DataCollatorForMaskedItemPrediction(
            max_seq_length=max_seq_length, mask_ratio=model.config.mask_ratio, vocab_size=len(tokenizer)
        ),
        eval_data_collator=DataCollatorForNextItemPrediction(max_seq_length=max_seq_length),
        evaluator=RankingEvaluator(ks=[5, 10, 20]),
        processing_class=tokenizer,  # the Trainer saves (and pushes) item_vocab.json with every checkpoint
    )
    test_users = tokenizer.decode(splits["test"]["input_ids"])
    test_targets = tokenizer.decode(splits["test"]["labels"])
    recommender = Bert4RecRecommender(model, tokenizer)
    before = trainer.evaluate(splits["test"], metric_key_prefix="before")
    new_targets, new_before = new_item_hits(recommender, test_users, test_targets, new_items)
    trainer.train()
    recommender.model = trainer.model  # the best checkpoint, restored by load_best_model_at_end
    after = trainer.evaluate(splits["test"], metric_key_prefix="after")
    _, new_after = new_item_hits(recommender, test_users, test_targets, new_items)

    results = {"before": before, "after": after}
    table = metrics_table(results)
    print(f"\ntest users: {len(test_users)}; {trainer.evaluator.describe()}\n{table}")
    print(
        f"{new_targets} test users' next item is a new one; hit@10 among them: {new_before:.3f} before, {new_after:.3f} after"
    )
    card = default_model_card(model.config, tokenizer) + (
        f"\n## Fine-tuning\n\nStarted from `{checkpoint}`; {added} items added to the vocabulary; "
        f"fine-tuned on `{log}` ({report.rows['train']} training windows).\n\n"
        f"Test (leave-one-out, {trainer.evaluator.describe()}):\n\n{table}\n"
    )
    Bert4RecRecommender(trainer.model, tokenizer, model_card=card).save_pretrained(output_dir)
    remove_checkpoints(output_dir / "checkpoints")  # the best model is saved; keep the folder hub-ready
    summary = {
        **results, "added_items": added, "new_item_targets": new_targets, "new_item_hit@10": {"before": new_before, "after": new_after},
        "checkpoint": str(checkpoint), "log": str(log),
    }  # fmt: skip
    (output_dir / "metrics.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    print(f"saved to {output_dir}")


if __name__ == "__main__":
    main()
