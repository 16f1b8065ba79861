"""What distillation's teachers cost per training step, on next-item rows (issue 24).

    python benchmarks/distillation_step.py                     # recipe distilled's shape, one thread
    python benchmarks/distillation_step.py --dataset beauty --data-path ../shared/data/beauty/beauty.txt \
        --set recipe=distilled                                 # Beauty's own next-item rows
    python benchmarks/distillation_step.py --teachers 1 --steps 3 --num-items 5000   # a quick look

On next-item rows masked at their last item by the training collator, batched as
``group_by_length`` batches them (rows of similar length), with untrained models of the
recipe's shape (4 layers, hidden 64). The rows are synthetic by default (lengths drawn
uniformly up to ``--seq-length``, over ``--num-items`` items: Beauty's 54,542), or, with
``--dataset``, the next-item rows of that data set as ``bert4rec train`` prepares it
(``--data-path``, ``--set``), a new batch of similar length at a random place of the
length order for each repeat (real logs are mostly short histories, which makes the
teachers' encoders a far smaller part than synthetic rows do):

* one teacher's encoder states at the distilled positions: the full forward, then
  ``speedups_bert4rec.hidden_states_at`` (the last layer at those positions only,
  what ``TeacherEnsemble`` uses), and the largest difference between the two;
* ``TeacherEnsemble.probabilities`` of ``--teachers`` teachers (their soft targets);
* a student's training step (forward, loss, backward, AdamW) without teachers and with
  their soft targets, the teachers' call included.

Mean seconds over ``--steps`` timed repeats after one untimed one.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch

from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedItemPrediction, DataCollatorForMaskedItemPrediction
from bert4rec_hf.speedups_bert4rec import hidden_states_at, use_cpu_speedups
from bert4rec_hf.training.config import load_config, parse_overrides
from bert4rec_hf.training.distillation import TeacherEnsemble
from bert4rec_hf.training.pipeline import prepare_data, with_data_path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", help="time the next-item rows of this data set (else synthetic rows)")
    parser.add_argument("--data-path", help="with --dataset: the log file")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="with --dataset: configuration overrides")
    parser.add_argument("--num-items", type=int, default=54_542)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seq-length", type=int, default=50)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--teachers", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5, help="timed repeats of each measurement")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    return args


def synthetic_histories(config: Bert4RecConfig, count: int, generator: torch.Generator) -> list[list[int]]:
    """Histories of 2 to ``max_seq_length`` items, sorted by length as ``group_by_length`` batches them."""
    lengths = torch.randint(2, config.max_seq_length + 1, (count,), generator=generator).sort().values.tolist()
    return [torch.randint(config.mask_token_id + 1, config.vocab_size, (n,), generator=generator).tolist() for n in lengths]


def dataset_histories(args: argparse.Namespace) -> tuple[list[list[int]], int, int]:
    """The data set's next-item rows in length order, its vocabulary size and window length."""
    overrides = parse_overrides([*args.set, f"torch_threads={args.threads}", "report_to=none"])
    config = load_config(args.dataset, None, with_data_path(overrides, args.data_path))
    # any next_item_share > 0 has the data prepared with its next-item rows (a run without a phase has none)
    data = prepare_data(config | {"next_item_share": max(config["next_item_share"], 0.5)})
    rows = data.processed.splits["next_item"].with_format("arrow")["input_ids"].to_pylist()
    order = np.argsort(np.fromiter(map(len, rows), dtype=np.int64, count=len(rows)), kind="stable")
    return [rows[i] for i in order], data.processed.tokenizer.vocab_size, config["max_seq_length"]


def similar_length_batches(histories: list[list[int]], size: int, generator: np.random.Generator) -> Iterator[list[list[int]]]:
    """Batches of ``size`` neighbours in ``histories``' length order, from random places."""
    while True:
        start = int(generator.integers(0, max(1, len(histories) - size + 1)))
        yield histories[start:start + size]


def predicted(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return batch["labels"].ne(-100)


def seconds(work: Callable[[dict[str, torch.Tensor]], object], batches: list[dict[str, torch.Tensor]]) -> float:
    """Mean seconds of ``work`` over ``batches[1:]``, after an untimed call on ``batches[0]``."""
    work(batches[0])
    start = time.perf_counter()
    for batch in batches[1:]:
        work(batch)
    return (time.perf_counter() - start) / (len(batches) - 1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    num_items, seq_length = args.num_items, args.seq_length
    if args.dataset:
        histories, vocab_size, seq_length = dataset_histories(args)
        num_items = vocab_size - 2
    config = Bert4RecConfig(
        vocab_size=num_items + 2, hidden_size=args.hidden, inner_size=4 * args.hidden, n_layers=args.layers,
        n_heads=2, max_seq_length=seq_length, hidden_dropout_prob=0.1, attn_dropout_prob=0.1,
        softmax_temperature=0.2, distillation_weight=0.9,
    )  # fmt: skip
    if not args.dataset:
        histories = synthetic_histories(config, args.batch_size, torch.Generator().manual_seed(0))
    collator = DataCollatorForMaskedItemPrediction(max_seq_length=seq_length, seed=0)
    rows = similar_length_batches(histories, args.batch_size, np.random.default_rng(0))
    batches = [
        collator([{"input_ids": history, "last_item_only": True} for history in next(rows)])
        for _ in range(args.steps + 1 if args.dataset else 1)
    ]
    if not args.dataset:  # synthetic rows: one batch of every length, timed again and again
        batches *= args.steps + 1
    teachers = TeacherEnsemble([Bert4RecForMaskedItemPrediction(config) for _ in range(args.teachers)])
    teacher = teachers.models[0].bert4rec
    student = use_cpu_speedups(Bert4RecForMaskedItemPrediction(config).train())
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3)

    def train_step(batch: dict[str, torch.Tensor], soft_targets: bool) -> None:
        inputs = dict(batch)
        if soft_targets:
            inputs["teacher_probabilities"] = teachers.probabilities(batch["input_ids"], batch["attention_mask"], predicted(batch))
        student(**inputs).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def full_forward(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return teacher(batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state[predicted(batch)]

    def states_at(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return hidden_states_at(teacher, batch["input_ids"], predicted(batch), attention_mask=batch["attention_mask"])

    with torch.no_grad():
        figures = {
            "mean_row_length": float(np.mean([float(batch["attention_mask"].sum(1).float().mean()) for batch in batches])),
            "teacher_full_forward_s": seconds(full_forward, batches),
            "teacher_hidden_states_at_s": seconds(states_at, batches),
            "max_state_difference": max(float((full_forward(batch) - states_at(batch)).abs().max()) for batch in batches),
            "soft_targets_s": seconds(
                lambda batch: teachers.probabilities(batch["input_ids"], batch["attention_mask"], predicted(batch)), batches
            ),
        }
    figures["student_step_s"] = seconds(lambda batch: train_step(batch, False), batches)
    figures["distilled_step_s"] = seconds(lambda batch: train_step(batch, True), batches)
    setting = {key: value for key, value in vars(args).items() if key != "output"}
    setting.update(num_items=num_items, seq_length=seq_length)
    print(json.dumps(setting))
    for name, value in figures.items():
        print(f"{name:28s} {value:.4g}")
    if args.output:
        with open(args.output, "w") as file:
            json.dump({"setting": setting, "torch": torch.__version__, **figures}, file, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
