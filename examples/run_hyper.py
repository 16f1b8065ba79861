"""RecBole's ``run_hyper.py`` for bert4rec-hf: the same flags, the same ``hyper.test`` files.

    python examples/run_hyper.py --model=BERT4Rec --dataset=ml-100k \\
        --config_files="my.yaml other.yaml" --params_file=configuration/hyper.test --output_file=hyper_example.result

Each trial is a normal training run through ``transformers.Trainer.hyperparameter_search``
(optuna): a space of only ``choice`` parameters is searched exhaustively, others
with TPE (``--max_evals`` trials). Besides RecBole's ``--output_file`` (the trial
table and the best parameters, as text), ``--output_dir`` receives ``trials.csv``,
``trials.json`` and the best model (``best/``, loadable with ``from_pretrained``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bert4rec_hf.training.config import parse_overrides
from bert4rec_hf.training.tuning import tune_bert4rec


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="BERT4Rec", help="only BERT4Rec (kept for RecBole's command lines)")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--config_files", default="", help="config files, separated by spaces or commas")
    parser.add_argument("--params_file", default="configuration/hyper.test", help="the hyper.test search space")
    parser.add_argument("--output_file", default="hyper_example.result", help="text report of all trials")
    parser.add_argument(
        "--output_dir", default=None, help="trials.csv/json and best/ (default outputs/<dataset>-tuning)"
    )
    parser.add_argument(
        "--max_evals",
        "--trials",
        dest="max_evals",
        type=int,
        default=None,
        help="number of trials (default: whole grid, or 20)",
    )
    parser.add_argument("--timeout", type=float, default=None, help="seconds after which no new trial starts")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier search in --output_dir")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", dest="overrides")
    args = parser.parse_args(argv)
    if args.model.lower() != "bert4rec":
        parser.error(f"--model {args.model}: this package trains BERT4Rec only")
    return args


def config_file_list(value: str) -> list[str]:
    """RecBole splits ``--config_files`` on spaces; commas work too."""
    return [path for path in value.replace(",", " ").split() if path]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = tune_bert4rec(
        args.params_file,
        args.dataset,
        config_file_list(args.config_files),
        parse_overrides(args.overrides),
        output_dir=args.output_dir,
        n_trials=args.max_evals,
        timeout=args.timeout,
        overwrite=args.overwrite,
    )
    if args.output_file:
        report = f"{result.table()}\n\n{result.summary()}\n"
        Path(args.output_file).write_text(report, encoding="utf-8")
        print(f"Report written to {args.output_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
