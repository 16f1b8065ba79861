"""What distillation's teachers cost per training step, on next-item rows (issue 24).

    python benchmarks/distillation_step.py                     # recipe distilled's shape, one thread
    python benchmarks/distillation_step.py --teachers 1 --steps 3 --num-items 5000   # a quick look

On synthetic next-item rows (lengths drawn up to ``--seq-length``, sorted as
``group_by_length`` batches them, masked at their last item by the training collator) over a catalog of
``--num-items`` items (default: Beauty's 54,542), with untrained models of the recipe's
shape (4 layers, hidden 64):

* one teacher's encoder states at the distilled positions: the full forward, then
  ``speedups_bert4rec.hidden_states_at`` (the last layer at those positions only,
  what ``TeacherEnsemble`` uses), and the largest difference between the two;
* ``TeacherEnsemble.probabilities`` of ``--teachers`` teachers (their soft targets), from
  their encoders, then from the states they remember of these rows
  (``remember_next_item_rows``, as a run's next-item phase does), and the seconds per row
  that remembering took;
* a student's training step (forward, loss, backward, AdamW) without teachers and with
  their soft targets (from their encoders, then remembered), the teachers' call included.

Mean seconds over ``--steps`` timed repeats after one untimed one.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch

from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedItemPrediction, DataCollatorForMaskedItemPrediction
from bert4rec_hf.speedups_bert4rec import hidden_states_at, use_cpu_speedups
from bert4rec_hf.training.distillation import TeacherEnsemble


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-items", type=int, default=54_542)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seq-length", type=int, default=50)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--teachers", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5, help="timed repeats of each measurement")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def next_item_histories(config: Bert4RecConfig, batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """Histories of 2 to ``max_seq_length`` items, sorted by length as ``group_by_length`` batches them."""
    lengths = torch.randint(2, config.max_seq_length + 1, (batch_size,), generator=generator).sort().values.tolist()
    return [torch.randint(config.mask_token_id + 1, config.vocab_size, (n,), generator=generator).tolist() for n in lengths]


def seconds(work: Callable[[], object], steps: int) -> float:
    work()
    start = time.perf_counter()
    for _ in range(steps):
        work()
    return (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = Bert4RecConfig(
        vocab_size=args.num_items + 2, hidden_size=args.hidden, inner_size=4 * args.hidden, n_layers=args.layers,
        n_heads=2, max_seq_length=args.seq_length, hidden_dropout_prob=0.1, attn_dropout_prob=0.1,
        softmax_temperature=0.2, distillation_weight=0.9,
    )  # fmt: skip
    histories = next_item_histories(config, args.batch_size, torch.Generator().manual_seed(0))
    collator = DataCollatorForMaskedItemPrediction(max_seq_length=args.seq_length, seed=0)
    batch = collator([{"input_ids": history, "last_item_only": True} for history in histories])
    predicted = batch["labels"].ne(-100)
    models = [Bert4RecForMaskedItemPrediction(config) for _ in range(args.teachers)]
    teachers, remembering = TeacherEnsemble(models), TeacherEnsemble(models)
    teacher = teachers.models[0].bert4rec
    student = use_cpu_speedups(Bert4RecForMaskedItemPrediction(config).train())
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3)

    def train_step(ensemble: TeacherEnsemble | None) -> None:
        inputs = dict(batch)
        if ensemble is not None:
            inputs["teacher_probabilities"] = ensemble.probabilities(batch["input_ids"], batch["attention_mask"], predicted)
        student(**inputs).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    with torch.no_grad():
        full = teacher(batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state[predicted]
        at = hidden_states_at(teacher, batch["input_ids"], predicted, attention_mask=batch["attention_mask"])
        figures = {
            "teacher_full_forward_s": seconds(
                lambda: teacher(batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state[predicted],
                args.steps,
            ),
            "teacher_hidden_states_at_s": seconds(
                lambda: hidden_states_at(teacher, batch["input_ids"], predicted, attention_mask=batch["attention_mask"]),
                args.steps,
            ),
            "max_state_difference": float((full - at).abs().max()),
            "soft_targets_s": seconds(
                lambda: teachers.probabilities(batch["input_ids"], batch["attention_mask"], predicted), args.steps
            ),
        }
        start = time.perf_counter()
        remembering.remember_next_item_rows(histories, args.seq_length)
        figures["remember_per_row_s"] = (time.perf_counter() - start) / len(histories)
        found, _ = remembering.remembered.find(batch["input_ids"], batch["attention_mask"], predicted)
        if not found.all():
            raise RuntimeError(f"{int((~found).sum())} of the batch's rows were not remembered")
        figures["soft_targets_remembered_s"] = seconds(
            lambda: remembering.probabilities(batch["input_ids"], batch["attention_mask"], predicted), args.steps
        )
        figures["max_probability_difference"] = float(
            (remembering.probabilities(batch["input_ids"], batch["attention_mask"], predicted)
             - teachers.probabilities(batch["input_ids"], batch["attention_mask"], predicted)).abs().max()
        )  # fmt: skip
    figures["student_step_s"] = seconds(lambda: train_step(None), args.steps)
    figures["distilled_step_s"] = seconds(lambda: train_step(teachers), args.steps)
    figures["distilled_step_remembered_s"] = seconds(lambda: train_step(remembering), args.steps)
    setting = {key: value for key, value in vars(args).items() if key != "output"}
    print(json.dumps(setting))
    for name, value in figures.items():
        print(f"{name:28s} {value:.4g}")
    if args.output:
        with open(args.output, "w") as file:
            json.dump({"setting": setting, "torch": torch.__version__, **figures}, file, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
