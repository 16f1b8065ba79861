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


def prepare_output_file(value: str) -> Path | None:
    """Creates the folder of ``--output_file`` before the search, so a bad path
    fails at once instead of after hours of trials."""
    if not value:
        return None
    path = Path(value)
    if path.is_dir():
        raise ValueError(f"--output_file {path} is a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--output_file {path}: cannot create its folder ({err.strerror})") from err
    return path


def search(args: argparse.Namespace) -> None:
    """The search and its text report."""
    output_file = prepare_output_file(args.output_file)
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
    if output_file is not None:
        output_file.write_text(f"{result.table()}\n\n{result.summary()}\n", encoding="utf-8")
        print(f"Report written to {output_file}")


def main(argv: Sequence[str] | None = None) -> int:
    """Bad input (a missing file, a bad hyper.test line, a bad --set) ends with a
    one-line ``error: ...`` and status 2, like an argparse error, not a traceback."""
    args = parse_args(argv)
    try:
        search(args)
    except (ValueError, FileNotFoundError) as err:  # ConfigError and HyperSpaceError are ValueErrors
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
