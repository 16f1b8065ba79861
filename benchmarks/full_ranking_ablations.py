"""What moves BERT4Rec's full-ranking quality on Amazon Beauty: one-factor ablations.

    # every variant at one seed, all side by side, 7 minutes of training each
    nvidia-cuda-mps-control -d      # on a GPU: lets the runs' small kernels overlap
    python benchmarks/full_ranking_ablations.py run --seeds 1 --time-budget 420 \\
        --output bench_out/ablations/seed1.json
    # the variants that moved it, on more seeds
    python benchmarks/full_ranking_ablations.py run --variants base h256 mask0.2 --seeds 2 3 ...
    python benchmarks/full_ranking_ablations.py table bench_out/ablations/*.json   # + validation curves
    # the reported figure (the authors' protocol): the winning overrides trained through each
    # user's item n-1 for the steps the held-out runs above found best (N), no validation on the way
    python benchmarks/full_ranking_ablations.py run --variants base --seeds 1 2 3 --time-budget 1e9 \
        --set WINNING_OVERRIDES train_on_validation_item=true max_steps=N eval_steps=N --output ...
    # a CPU smoke run of the whole path (a few steps per variant)
    python benchmarks/full_ranking_ablations.py run --variants base ls0.1 --seeds 1 --parallel 2 \\
        --set max_steps=20 eval_steps=10 --time-budget 60

On the lent GPU machine (``../shared`` does not travel and its image lacks ``datasets``),
one call of ``bash benchmarks/full_ranking_device_call.sh`` runs the candidate recipes held
out at seed 1 and trained through item n-1 at seeds 1-3, all side by side; its header says
what it runs, what the last call found, and what to prepare here first (the data file and
three wheels).

Every run is ``bert4rec train --dataset beauty --recipe paper`` (the file from
``--data-path``; the paper's model and optimiser, ``configuration/recipe/paper/beauty.yaml``)
with lr 1e-3 (1e-4, the paper's, is far from
converged in a GPU-minutes budget: "The paper's protocol on Beauty" in
benchmarks/README.md), plus one variant's overrides, then ``--set``'s (which win over the variant's). Validation holds out each
user's item n-1 (``train_on_validation_item: false``) and ranks it against the
whole catalog, so early stopping and the kept checkpoint never see the test item;
training stops at ``--time-budget`` seconds with the lr decay fitted to the steps
that fit. Each kept model is then ranked on the test items four ways: the whole
catalog with the history kept as candidates (as RecBole does; the headline figure),
the whole catalog without it, and 100 negatives sampled by popularity (the
paper's protocol) and uniformly. A table row is a variant: the mean over its
seeds and, at equal seeds, its difference to ``base``. The output JSON is
rewritten as each run finishes (``complete`` false until all have), so a call
cut short by its time limit keeps the runs it finished.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from reproduce_paper import DEFAULT_DATA, PAPER_BEAUTY
from seed_sweep import CLI, run_jobs, train_once

from bert4rec_hf.training.auto_schedule import WINDOWS_AND_RATES
from bert4rec_hf.training.config import config_dir, read_yaml

# what `schedule: auto` gives a user's own log (measured on ml-100k): windows ending at every
# item, dropout 0.2, a quarter of the rows last-item only, the package's mask ratio
OWN_LOG_KEYS = ("train_stride", "train_prefixes", "hidden_dropout_prob", "attn_dropout_prob", "last_item_mask_ratio")
OWN_LOG_MASKING = [
    *(f"{key}={WINDOWS_AND_RATES[key]}" for key in OWN_LOG_KEYS),
    f"mask_ratio={read_yaml(config_dir() / 'overall.yaml')['mask_ratio']}",
]

# the factors the variants combine
DROPOUT_02 = ["hidden_dropout_prob=0.2", "attn_dropout_prob=0.2"]  # the paper's 0.5 / 0.2
HIDDEN_128 = ["hidden_size=128", "inner_size=512"]
HIDDEN_256 = ["hidden_size=256", "inner_size=1024"]
TEMPERATURE_02 = ["softmax_temperature=0.2"]  # the Cloze softmax over scores / 0.2: sharper from the first step
FULLRANK = [*DROPOUT_02, *TEMPERATURE_02]  # recipe fullrank's changes to ``BASE`` (its steps aside)
# four times the rows a step, the warm-up the same rows: on a GPU a run's small kernels leave a step at batch
# 1,024 costing about what one at 256 does, so this is how a run there sees more rows a second
BATCH_1024 = ["train_batch_size=1024", "warmup_steps=25"]
# half the rows a step, the warm-up the same rows: batch 1,024 learned less per row than 256, so a smaller
# batch might learn more per row (compare it at equal rows: twice a batch-256 run's steps)
BATCH_128 = ["train_batch_size=128", "warmup_steps=200"]
EVERY_PREFIX = ["train_stride=1", "train_prefixes=true"]  # a window ending at every item
# the paper's last-item rows taken to their end on EVERY_PREFIX's windows: each training item a row's last, masked
# alone, is next-item prediction at every position (SASRec's targets) on the bidirectional encoder
NEXT_ITEM_ROWS = [*EVERY_PREFIX, "last_item_mask_ratio=1.0"]
DROPOUT_01 = ["hidden_dropout_prob=0.1", "attn_dropout_prob=0.1"]  # BERT's and SASRec's
TWO_VIEWS = ["num_views=2"]  # each window masked twice a step, on its own draws (CBiT's positive views)
GROUPED = ["group_by_length=true"]  # batches of similar length: the same rows, a fraction of the padded positions
CONSTANT_RATE = "lr_scheduler_type=constant_with_warmup"  # so a validation curve reads as what each length gives
# the last three quarters of the steps on next-item rows, after the Cloze windows of the rest (pre-training then fine-tuning)
NEXT_ITEM_PHASE = ["next_item_share=0.75"]
# recipe nextitem's rows and dropout at a constant rate: the held-out reference of the depth variants
NEXT_ITEM_HELD_OUT = [*DROPOUT_01, *TEMPERATURE_02, CONSTANT_RATE, *NEXT_ITEM_ROWS]
# the same at 4 layers on grouped batches (recipe nextitem's encoder and sampler): the reference of the sixth session's variants
DEEP_HELD_OUT = [*NEXT_ITEM_HELD_OUT, *GROUPED, "n_layers=4"]

# one factor each against ``base`` (then combinations and the own-log settings); the order is the priority when a call has room for fewer
VARIANTS: dict[str, list[str]] = {
    "base": [],
    "seen_off": ["seen_item_bias=false"],  # the paper's output layer, no learned offset for history items
    "h256": HIDDEN_256,
    "h128": HIDDEN_128,
    "mask0.2": ["mask_ratio=0.2"],
    "mask0.4": ["mask_ratio=0.4"],
    "last0.25": ["last_item_mask_ratio=0.25"],
    "drop0.2": DROPOUT_02,
    "stride1": EVERY_PREFIX,
    "lr3e-3": ["learning_rate=0.003", "warmup_steps=0.05"],
    "ls0.1": ["label_smoothing=0.1"],
    "temp0.5": ["softmax_temperature=0.5"],
    "temp0.2": TEMPERATURE_02,
    "temp0.1": ["softmax_temperature=0.1"],
    "wd0": ["weight_decay=0.0"],
    "untied": ["tie_word_embeddings=false"],
    "const": [CONSTANT_RATE],  # schedule: auto's rate: no decay to 0
    "layers3": ["n_layers=3"],
    "len20": ["max_seq_length=20", "train_stride=2"],  # the most recent 20 items; windows every 0.1 * length, as the paper's
    # two factors: the temperature (the largest effect at 2,000 CPU steps) on the wider model, and with less dropout
    "h256+temp0.2": [*HIDDEN_256, *TEMPERATURE_02],
    "drop0.2+temp0.2": FULLRANK,
    # recipe fullrank's changes on a wider model (hidden 128 and dropout 0.2: the gains that held at 7,300 GPU steps)
    "drop0.2+temp0.2+h256": [*FULLRANK, *HIDDEN_256],
    "drop0.2+temp0.2+h128": [*FULLRANK, *HIDDEN_128],
    # with more rows masked at their last item only, the way the model is queried (the paper's 1 in 11)
    "drop0.2+temp0.2+last0.25": [*FULLRANK, "last_item_mask_ratio=0.25"],
    "drop0.2+temp0.2+last0.5": [*FULLRANK, "last_item_mask_ratio=0.5"],
    "drop0.2+temp0.2+mask0.4": [*FULLRANK, "mask_ratio=0.4"],  # more of each history visible (the paper's 0.6)
    "drop0.2+temp0.2+wd0": [*FULLRANK, "weight_decay=0.0"],  # no decay of the item embeddings (the paper's 0.01)
    "drop0.2+temp0.2+const": [*FULLRANK, CONSTANT_RATE],  # no decay to 0 at the end
    # the wider model (the largest gain at GPU length) with each of the two CPU gains on fullrank's settings
    "drop0.2+temp0.2+h128+const": [*FULLRANK, *HIDDEN_128, CONSTANT_RATE],
    "drop0.2+temp0.2+h128+mask0.4": [*FULLRANK, *HIDDEN_128, "mask_ratio=0.4"],
    # a window ending at every item (6.6x the rows): more varied contexts where a run stops gaining from more passes
    "drop0.2+temp0.2+h128+stride1": [*FULLRANK, *HIDDEN_128, *EVERY_PREFIX],
    # with four times the rows a step
    "drop0.2+temp0.2+b1024": [*FULLRANK, *BATCH_1024],
    "drop0.2+temp0.2+b1024+lr2e-3": [*FULLRANK, *BATCH_1024, "learning_rate=0.002"],
    "drop0.2+temp0.2+h128+b1024+lr2e-3": [*FULLRANK, *HIDDEN_128, *BATCH_1024, "learning_rate=0.002"],
    # at a constant rate (so 2,000 CPU steps compare with the const row): the most recent 20 items only, and
    # BERT's input corruption (a masked item shown as [MASK] 80%, a random item 10%, itself 10%)
    "drop0.2+temp0.2+const+len20": [*FULLRANK, CONSTANT_RATE, "max_seq_length=20", "train_stride=2"],
    "drop0.2+temp0.2+const+rr": [*FULLRANK, CONSTANT_RATE, "mask_replace_prob=0.8", "random_replace_prob=0.1"],
    # two masked copies of each window a step (twice the rows), and CBiT's contrastive loss between them
    "drop0.2+temp0.2+const+views2": [*FULLRANK, CONSTANT_RATE, *TWO_VIEWS],
    "drop0.2+temp0.2+const+views2+cl0.3": [*FULLRANK, CONSTANT_RATE, *TWO_VIEWS, "contrastive_weight=0.3"],
    # next-item rows (NEXT_ITEM_ROWS); half of them, the other half Cloze-masked; with dropout's next step down
    # (0.5 -> 0.2 was the largest gain that held at GPU length); and at hidden 128
    "drop0.2+temp0.2+const+stride1+last1": [*FULLRANK, CONSTANT_RATE, *NEXT_ITEM_ROWS],
    "drop0.2+temp0.2+const+stride1+last0.5": [*FULLRANK, CONSTANT_RATE, *EVERY_PREFIX, "last_item_mask_ratio=0.5"],
    "drop0.1+temp0.2+const": [*DROPOUT_01, *TEMPERATURE_02, CONSTANT_RATE],
    "drop0.1+temp0.2+const+stride1+last1": NEXT_ITEM_HELD_OUT,
    # the same with the shipped decay to 0 (a budgeted run's end settles, as fullrank's does): the GPU call's
    "drop0.1+temp0.2+stride1+last1": [*DROPOUT_01, *TEMPERATURE_02, *NEXT_ITEM_ROWS],
    "drop0.1+temp0.2+stride1+last1+h128": [*DROPOUT_01, *TEMPERATURE_02, *NEXT_ITEM_ROWS, *HIDDEN_128],
    "drop0.1+temp0.2+const+stride1+last1+h128": [
        *DROPOUT_01, *TEMPERATURE_02, CONSTANT_RATE, *NEXT_ITEM_ROWS, *HIDDEN_128
    ],  # fmt: skip
    # batches of similar length (a speed path: the quality must match its ungrouped row); without the temperature
    "drop0.1+temp0.2+const+stride1+last1+grouped": [*NEXT_ITEM_HELD_OUT, *GROUPED],
    "drop0.1+const+stride1+last1+grouped": [*DROPOUT_01, CONSTANT_RATE, *NEXT_ITEM_ROWS, *GROUPED],
    # deeper encoders for next-item rows: their [MASK] query reads the history only through attention, and its
    # first layer's query is the same for every row, so depth is what lets it relate the items it reads
    "drop0.1+temp0.2+const+stride1+last1+grouped+layers4": DEEP_HELD_OUT,
    "drop0.1+temp0.2+const+stride1+last1+grouped+layers6": [*NEXT_ITEM_HELD_OUT, *GROUPED, "n_layers=6"],
    "drop0.1+temp0.2+const+stride1+last1+layers4": [*NEXT_ITEM_HELD_OUT, "n_layers=4"],
    "drop0.1+temp0.2+const+stride1+last1+grouped+layers4+b128": [*DEEP_HELD_OUT, *BATCH_128],
    # four heads of 16: the [MASK] query's first layer can weigh four sets of positions, not two
    "drop0.1+temp0.2+const+stride1+last1+grouped+layers4+heads4": [*DEEP_HELD_OUT, "n_heads=4"],
    # stronger AdamW decay (the paper's 0.01 did nothing measurable): held out, the 4-layer rows' training loss falls
    # from 10.1 to 7.6 while the validation loss moves from 10.6 to 10.3, so the item embeddings memorise
    "drop0.1+temp0.2+const+stride1+last1+grouped+layers4+wd0.1": [*DEEP_HELD_OUT, "weight_decay=0.1"],
    "drop0.1+temp0.2+const+stride1+last1+grouped+layers4+wd1": [*DEEP_HELD_OUT, "weight_decay=1.0"],
    # no dropout at all: 0.1 beat 0.2 on these rows, and stronger weight decay lost (the trend is toward less)
    "drop0+temp0.2+const+stride1+last1+grouped+layers4": [*DEEP_HELD_OUT, "hidden_dropout_prob=0.0", "attn_dropout_prob=0.0"],
    "drop0.1+temp0.2+stride1+last1+layers4": [*DROPOUT_01, *TEMPERATURE_02, *NEXT_ITEM_ROWS, "n_layers=4"],
    # recipe nextitem since the fifth session (its trained-through runs: `--set group_by_length=true` on the one above)
    "drop0.1+temp0.2+stride1+last1+grouped+layers4": [*DROPOUT_01, *TEMPERATURE_02, *NEXT_ITEM_ROWS, *GROUPED, "n_layers=4"],
    # recipe clozefirst: nextitem's model on the paper's Cloze windows for 2,000 of 8,000 steps, then its next-item rows
    "drop0.1+temp0.2+grouped+layers4+next0.75": [*DROPOUT_01, *TEMPERATURE_02, *GROUPED, "n_layers=4", *NEXT_ITEM_PHASE],
    # its switch at 3,000 of 8,000 steps: level with 2,000 at seed 1 trained through (CPU, eighth session)
    "drop0.1+temp0.2+grouped+layers4+next0.625": [*DROPOUT_01, *TEMPERATURE_02, *GROUPED, "n_layers=4", "next_item_share=0.625"],
    # at hidden 128 with more dropout: at 0.1 the wider model memorised the training items trained through (CPU,
    # ninth session: trained-item validation 0.559 against 0.291, test 0.0301 against 0.0327)
    "drop0.2+temp0.2+grouped+layers4+next0.75+h128": [*DROPOUT_02, *TEMPERATURE_02, *GROUPED, "n_layers=4", *NEXT_ITEM_PHASE, *HIDDEN_128],
    "drop0.3+temp0.2+grouped+layers4+next0.75+h128": [
        "hidden_dropout_prob=0.3", "attn_dropout_prob=0.3", *TEMPERATURE_02, *GROUPED, "n_layers=4", *NEXT_ITEM_PHASE, *HIDDEN_128
    ],  # fmt: skip
    # the recipe with three next-item branches from its Cloze checkpoint, their weights averaged (next_item_branches):
    # 0.0329 / 0.0556 against 0.0321 / 0.0540 for the branches alone (CPU, tenth session, seed 1); branches refuse
    # a time budget (it would leave the later branches none), so --time-budget does not apply: max_steps bounds it
    "drop0.1+temp0.2+grouped+layers4+next0.75+soup3": [
        *DROPOUT_01, *TEMPERATURE_02, *GROUPED, "n_layers=4", *NEXT_ITEM_PHASE, "next_item_branches=3", "time_budget=null"
    ],  # fmt: skip
    "ownlog": OWN_LOG_MASKING,  # at base's batch and learning rates
}
BASE = [
    "recipe=paper", "learning_rate=0.001", "train_on_validation_item=false",
    "eval_mode=full", "exclude_history=false", "valid_metric=ndcg@10", "stopping_step=1000", "report_to=none",
]  # fmt: skip
# the test rankings of each kept model: (label, `bert4rec evaluate` options; None: the run's
# own test evaluation, full ranking with the history kept, read from its metrics.json)
RANKINGS: dict[str, list[str] | None] = {
    "full": None,
    "full_excluded": ["--exclude-history"],
    "pop100": ["--mode", "pop100"],
    "uni100": ["--mode", "uni100"],
}
METRICS = ("ndcg@10", "hit@10")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train and rank the variants")
    run.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), metavar="NAME")
    run.add_argument("--seeds", type=int, nargs="+", default=[1])
    run.add_argument("--time-budget", type=float, default=420.0, help="seconds of training per run")
    run.add_argument("--eval-steps", type=int, default=2000, help="validate every N steps")
    run.add_argument("--parallel", type=int, default=len(VARIANTS), help="runs at a time (default: all variants)")
    run.add_argument("--threads", type=int, default=1, help="CPU threads per run")
    run.add_argument("--data-path", type=Path, default=DEFAULT_DATA)
    run.add_argument("--no-bf16", action="store_true", help="float32 even where the GPU supports bf16")
    run.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="overrides for every run, applied after the variant's")
    run.add_argument("--work-dir", default="bench_out/ablations/runs")
    run.add_argument("--output", default="bench_out/ablations/ablations.json")
    table = commands.add_parser("table", help="the table of one or more run outputs")
    table.add_argument("results", nargs="+", type=Path)
    return parser.parse_args(argv)


def rank_test(model_dir: str, options: list[str], output: Path, env: dict[str, str]) -> dict[str, float]:
    """The test metrics of one saved model under one ranking (``bert4rec evaluate``)."""
    command = [sys.executable, "-c", CLI, "evaluate", model_dir, *options, "--output", str(output)]
    with open(output.with_suffix(".log"), "w") as log:
        if subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env).returncode != 0:
            return {"error": f"{' '.join(options)}: see {output.with_suffix('.log')}"}
    return read_ranking(output)


def read_ranking(output: Path) -> dict[str, float]:
    """The test metrics ``bert4rec evaluate --output`` wrote to ``output``."""
    test = json.loads(output.read_text())["test"]
    return {metric: test[f"test_{metric}"] for metric in METRICS}


def run_variant(args: argparse.Namespace, name: str, seed: int) -> dict:
    record = train_once(args, name, [*VARIANTS[name], *args.overrides], seed)  # --set wins over the variant
    if "error" in record:
        return record
    metrics = json.loads((Path(record["model_dir"]) / "metrics.json").read_text())
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    folder = Path(record["model_dir"]).parent
    rankings = {
        label: {metric: metrics["test"][f"test_{metric}"] for metric in METRICS}
        if options is None
        else rank_test(record["model_dir"], options, folder / f"test_{label}.json", env)
        for label, options in RANKINGS.items()
    }
    return {
        **record, "epochs": metrics["epochs"], "validation_curve": metrics["validation_curve"], "rankings": rankings
    }  # fmt: skip


def run(args: argparse.Namespace) -> int:
    if not args.data_path.is_file():
        raise SystemExit(f"full_ranking_ablations: {args.data_path} not found (give --data-path to beauty.txt)")
    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported() and not args.no_bf16
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    # train_once's view of the run: `bert4rec train --dataset beauty --set seed=S <base> <variant> <--set>`
    args.dataset, args.log, args.metric = "beauty", None, "ndcg@10"
    args.overrides = args.set
    args.set = [
        *BASE, f"data_path={args.data_path}", f"time_budget={args.time_budget}", f"eval_steps={args.eval_steps}",
        f"bf16={str(bf16).lower()}",
    ]  # fmt: skip
    jobs = [(name, seed) for seed in args.seeds for name in args.variants]
    print(f"{len(jobs)} runs on {device} (bf16: {bf16}), {args.parallel} at a time", flush=True)
    started = time.perf_counter()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)

    def write(runs: list[dict]) -> None:  # after every finished run: a call cut short keeps its runs
        result = {
            "device": device, "bf16": bf16, "time_budget": args.time_budget, "base": args.set, "set": args.overrides,
            "date": time.strftime("%Y-%m-%d %H:%M %Z"), "seconds": time.perf_counter() - started,
            "complete": len(runs) == len(jobs), "runs": runs,
        }  # fmt: skip
        Path(args.output).write_text(json.dumps(result, indent=1))

    runs = run_jobs(lambda job: run_variant(args, *job), jobs, args.parallel, on_done=write)
    print("\n".join([*table_lines(runs), "", *curve_lines(runs)]))
    return 1 if any("error" in record for record in runs) else 0


def _value(record: dict, ranking: str, metric: str) -> float | None:
    return record.get("rankings", {}).get(ranking, {}).get(metric)


def table_lines(runs: list[dict]) -> list[str]:
    """One row per variant: mean over its seeds of every ranking's test NDCG@10 / HR@10,
    and the headline's (full, history kept) paired difference to ``base``."""
    base = {r["seed"]: _value(r, "full", "ndcg@10") for r in runs if r["variant"] == "base"}
    header = " | ".join(f"{ranking} NDCG@10 / HR@10" for ranking in RANKINGS)
    lines = [
        f"| variant | seeds | steps | {header} | full NDCG@10 - base (same seed) |",
        "|---|---:|---:|" + "---|" * len(RANKINGS) + "---:|",
    ]
    for name in dict.fromkeys(r["variant"] for r in runs):
        done = [r for r in runs if r["variant"] == name and _value(r, "full", "ndcg@10") is not None]
        if not done:
            lines.append(f"| {name} | 0 |" + " |" * (len(RANKINGS) + 2))
            continue
        cells = []
        for ranking in RANKINGS:
            values = [[_value(r, ranking, metric) for r in done] for metric in METRICS]
            complete = all(v is not None for column in values for v in column)
            cells.append(" / ".join(f"{statistics.mean(column):.4f}" for column in values) if complete else "—")
        paired = [_value(r, "full", "ndcg@10") - base[r["seed"]] for r in done if base.get(r["seed"]) is not None]
        difference = f"{statistics.mean(paired):+.4f}" if paired and name != "base" else ""
        steps = statistics.mean(r["steps"] for r in done)
        lines.append(f"| {name} | {len(done)} | {steps:,.0f} | {' | '.join(cells)} | {difference} |")
    paper = f"{PAPER_BEAUTY['ndcg@10']:.4f} / {PAPER_BEAUTY['hit@10']:.4f}"
    lines.append(f"| the paper's BERT4Rec (400k steps) | | | — | — | {paper} | — | |")
    return lines


def curve_lines(runs: list[dict]) -> list[str]:
    """One row per run: its held-out validation NDCG@10 at every evaluation, which tells a
    variant that had levelled off from one still climbing when its budget ran out."""
    lines = ["| variant | seed | validation NDCG@10 at step |", "|---|---:|---|"]
    for record in runs:
        points = ", ".join(f"{p['step']:,}: {p['ndcg@10']:.4f}" for p in record.get("validation_curve", []))
        lines.append(f"| {record['variant']} | {record['seed']} | {points} |")
    return lines


def table(args: argparse.Namespace) -> int:
    runs = [record for path in args.results for record in json.loads(path.read_text())["runs"]]
    print("\n".join([*table_lines(runs), "", *curve_lines(runs)]))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run(args) if args.command == "run" else table(args)


if __name__ == "__main__":
    sys.exit(main())
