"""Training and evaluation throughput against batch size and sequence length.

    python benchmarks/throughput.py                                      # default grid, CPU
    python benchmarks/throughput.py --batch-sizes 64 256 --seq-lengths 50 --steps 3   # small grid

For each (batch size B, sequence length L), on synthetic full-length histories
over a catalog of ``--num-items`` items (default: Beauty's 54,542):

* training: masked items and rows per second of a full step (forward, masked
  loss, backward, gradient clipping, AdamW) on batches the Cloze collator made
  beforehand; the collator's own time per batch is reported beside it;
* evaluation: users per second of full-ranking evaluation (score every item
  for the [MASK] appended to each history, rank the target among them);
* the share of the machine's matmul FLOP/s the training step reaches. FLOPs
  are counted analytically (multiply-add = 2 FLOPs; backward = 2x forward):
  per layer 8BLH^2 (Q, K, V, output projections) + 4BL^2H (scores and
  weighted values) + 4BLHI (feed-forward); the head 2MH^2 + 2MHV on the M
  masked positions only. The peak is measured in the same run with a large
  float32 matmul (``--matmul-size``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from bert4rec_hf import (
    Bert4RecConfig,
    Bert4RecForMaskedItemPrediction,
    DataCollatorForMaskedItemPrediction,
    DataCollatorForNextItemPrediction,
    RankingEvaluator,
)
from bert4rec_hf.speedups_bert4rec import use_cpu_speedups

BEAUTY_ITEMS = 54_542


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, steps: int, warmup: int) -> float:
    """Seconds per call of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def peak_matmul_flops(device: torch.device, size: int, seconds: float = 1.0) -> float:
    """FLOP/s of a ``size`` x ``size`` float32 matmul, the best of repeated runs."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    torch.mm(a, b)
    best, spent = float("inf"), 0.0
    while spent < seconds:
        synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        elapsed = time.perf_counter() - start
        best, spent = min(best, elapsed), spent + elapsed
    return 2 * size**3 / best


def forward_flops(config: Bert4RecConfig, batch: int, length: int, scored: int) -> float:
    """Forward FLOPs of the encoder on (batch, length) plus the head on ``scored`` positions."""
    hidden, inner, layers = config.hidden_size, config.inner_size, config.n_layers
    per_layer = 8 * batch * length * hidden**2 + 4 * batch * length**2 * hidden + 4 * batch * length * hidden * inner
    head = 2 * scored * hidden**2 + 2 * scored * hidden * config.vocab_size
    return layers * per_layer + head


def synthetic_histories(rows: int, length: int, num_items: int, generator: torch.Generator) -> list[dict]:
    items = torch.randint(2, num_items + 2, (rows, length), generator=generator)
    return [{"input_ids": row} for row in items.tolist()]


def measure(args: argparse.Namespace, batch: int, length: int, device: torch.device, peak: float) -> dict:
    torch.manual_seed(args.seed)
    config = Bert4RecConfig(
        vocab_size=args.num_items + 2,
        max_seq_length=length,
        mask_ratio=args.mask_ratio,
        seen_item_bias=not args.no_seen_item_bias,
    )
    model = use_cpu_speedups(Bert4RecForMaskedItemPrediction(config)).to(device)  # as Bert4RecTrainer does
    if args.plain_softmax:
        model.cpu_loss_chunk_size = None  # the CE loss as the paper's model computes it, to compare
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    generator = torch.Generator().manual_seed(args.seed)
    collator = DataCollatorForMaskedItemPrediction(
        max_seq_length=length, mask_ratio=args.mask_ratio, vocab_size=config.vocab_size, generator=generator
    )
    features = [synthetic_histories(batch, length, args.num_items, generator) for _ in range(args.distinct_batches)]
    collate_seconds = timed(lambda: collator(features[0]), torch.device("cpu"), steps=3, warmup=1)
    batches = [{k: v.to(device) for k, v in collator(f).items()} for f in features]
    masked = [int(b["labels"].ne(-100).sum()) for b in batches]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)
    counter = {"i": 0}

    def train_step() -> None:
        inputs = batches[counter["i"] % len(batches)]
        counter["i"] += 1
        with autocast:
            loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    model.train()
    step_seconds = timed(train_step, device, args.steps, args.warmup)
    mean_masked = sum(masked) / len(masked)
    train_flops = 3 * forward_flops(config, batch, length, mean_masked)

    evaluator = RankingEvaluator(mode="full", ks=(10,))
    eval_features = [
        {"input_ids": f["input_ids"][:-1], "labels": f["input_ids"][-1]} for f in features[0]
    ]  # history of L - 1 items + [MASK]
    eval_batch = {k: v.to(device) for k, v in DataCollatorForNextItemPrediction(length)(eval_features).items()}
    targets = eval_batch["labels"][:, -1]

    @torch.no_grad()
    def eval_step() -> None:
        with autocast:
            scores = model(input_ids=eval_batch["input_ids"], attention_mask=eval_batch["attention_mask"]).logits
        evaluator.rank(scores.float(), None, targets)

    model.eval()
    eval_seconds = timed(eval_step, device, args.steps, args.warmup)
    eval_flops = forward_flops(config, batch, length, batch)
    return {
        "batch_size": batch,
        "seq_length": length,
        "masked_per_batch": mean_masked,
        "train_step_ms": 1000 * step_seconds,
        "train_rows_per_s": batch / step_seconds,
        "train_masked_items_per_s": mean_masked / step_seconds,
        "train_gflops_per_s": train_flops / step_seconds / 1e9,
        "train_share_of_peak": train_flops / step_seconds / peak,
        "collate_ms": 1000 * collate_seconds,
        "eval_users_per_s": batch / eval_seconds,
        "eval_gflops_per_s": eval_flops / eval_seconds / 1e9,
        "eval_share_of_peak": eval_flops / eval_seconds / peak,
    }


def render(rows: list[dict]) -> str:
    lines = [
        "| batch | length | masked / batch | train step, ms | masked items / s | rows / s | GFLOP/s | share of peak "
        "| collate, ms | eval users / s | eval share of peak |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['batch_size']} | {r['seq_length']} | {r['masked_per_batch']:.0f} | {r['train_step_ms']:.1f} "
            f"| {r['train_masked_items_per_s']:,.0f} | {r['train_rows_per_s']:,.0f} | {r['train_gflops_per_s']:.1f} "
            f"| {100 * r['train_share_of_peak']:.1f}% | {r['collate_ms']:.1f} | {r['eval_users_per_s']:,.0f} "
            f"| {100 * r['eval_share_of_peak']:.1f}% |"
        )
    return "\n".join(lines)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--seq-lengths", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--num-items", type=int, default=BEAUTY_ITEMS, help="catalog size (default: Beauty's)")
    parser.add_argument("--mask-ratio", type=float, default=0.2)
    parser.add_argument(
        "--no-seen-item-bias", action="store_true", help="the paper's model, without the learned seen-item offset"
    )
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--distinct-batches", type=int, default=2, help="pre-collated batches cycled through")
    parser.add_argument("--matmul-size", type=int, default=2048, help="side of the float32 matmul of the peak")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu", help="default: cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (the peak stays float32)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument(
        "--plain-softmax", action="store_true",
        help="CPU training's CE loss without the chunked speed path (speedups_bert4rec), to compare",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, help="write the rows as JSON here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available", file=sys.stderr)
        return 1
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{cpu_name()}, {os.cpu_count()} CPUs"
    peak = peak_matmul_flops(device, args.matmul_size)
    print(
        f"device: {name}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}\n"
        f"float32 matmul peak ({args.matmul_size}^2): {peak / 1e9:.1f} GFLOP/s; catalog {args.num_items:,} items, "
        f"mask ratio {args.mask_ratio}, hidden 64, 2 layers, 2 heads, inner 256{', bf16' if args.bf16 else ''}"
        f"{', plain softmax' if args.plain_softmax else ''}\n",
        flush=True,
    )
    rows = []
    for length in args.seq_lengths:
        for batch in args.batch_sizes:
            rows.append(measure(args, batch, length, device, peak))
            print(
                f"  B={batch:<5} L={length:<4} {rows[-1]['train_masked_items_per_s']:>10,.0f} masked items/s  "
                f"{rows[-1]['eval_users_per_s']:>9,.0f} eval users/s",
                flush=True,
            )
    print("\n" + render(rows))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        payload = {"device": name, "peak_flops": peak, "args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}
        args.output.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
