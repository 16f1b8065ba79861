"""``bert4rec recommend DIR``: top-k items for one history or a JSONL file of them.

    bert4rec recommend outputs/ml-100k --history "50 172 133" -k 10
    bert4rec recommend outputs/ml-100k --input histories.jsonl --output recs.jsonl

Input lines are JSON objects ``{"user_id": ..., "history": [raw ids, oldest first]}``;
output lines are ``{"user_id": ..., "items": [...], "scores": [...]}`` in input
order. A line that cannot be answered (not JSON, no history, unknown ids, ...)
is reported on stderr with its line number and left out; the other lines are
still answered, and the exit code is 1. Bad options (``-k`` beyond the catalog,
an unknown ``--deny`` id, ...) stop the run before ``--output`` is touched, and
an existing ``--output`` is replaced only once at least one line was answered.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

_SEPARATORS = re.compile(r"[\s,]+")
# the Python spelling of an option in the recommender's error hints -> the flag that sets it here
_FLAG_HINTS = {"unknown='ignore'": "--unknown ignore", "on_empty='popular'": "--on-empty popular"}


def _id_list(value: str) -> list[str]:
    """Raw ids from ``"50 172 133"`` / ``"50,172"``, or one id per line of a file
    with ``@path``: a file can hold ids with spaces or commas ("Heat (1995)")."""
    if not value.startswith("@"):
        return [item for item in _SEPARATORS.split(value.strip()) if item]
    path = Path(value[1:])
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        reason = "no such file" if isinstance(err, FileNotFoundError) else err
        raise argparse.ArgumentTypeError(f"{path}: {reason}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _cli_message(err: Exception) -> str:
    """An error's text with its hints in command-line flags (``--unknown ignore``,
    not the keyword argument ``unknown='ignore'``)."""
    message = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    for keyword, flag in _FLAG_HINTS.items():
        message = message.replace(keyword, flag)
    return message


def _parse_line(line: str) -> tuple[Any, list[Any]]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"not valid JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object with 'user_id' and 'history', got {type(record).__name__}")
    history = record.get("history")
    if not isinstance(history, list):
        raise ValueError(f"'history' must be a list of item ids, got {type(history).__name__}")
    return record.get("user_id"), history


def _batches(handle: TextIO, size: int) -> Iterator[list[tuple[int, str]]]:
    """(line number, text) of the non-blank lines, ``size`` at a time."""
    batch = []
    for number, line in enumerate(handle, start=1):
        if line.strip():
            batch.append((number, line))
            if len(batch) == size:
                yield batch
                batch = []
    if batch:
        yield batch


def _print_table(result: Any) -> None:
    print(f"{'rank':>4}  {'item':<20} score")
    for rank, (item, score) in enumerate(zip(result.items, result.scores, strict=True), start=1):
        print(f"{rank:>4}  {str(item):<20} {score:.4f}")


def _recommend_file(recommender: Any, args: argparse.Namespace, options: dict[str, Any]) -> int:
    """Answers every line of ``--input``; returns the number of failed lines.

    ``--output`` is written beside itself and renamed at the end, and left as it
    was when no line could be answered: a failed run never empties it.
    """
    from tqdm.auto import tqdm

    source = Path(args.input)
    with source.open(encoding="utf-8") as handle:
        total = sum(1 for line in handle if line.strip())
    target = Path(args.output) if args.output else None
    out = open(f"{target}.partial", "w", encoding="utf-8") if target else sys.stdout
    failures = 0

    def fail(number: int, message: str) -> None:
        nonlocal failures
        failures += 1
        tqdm.write(f"bert4rec recommend: error: {source}, line {number}: {message}", file=sys.stderr)

    try:
        with (
            source.open(encoding="utf-8") as handle,
            tqdm(
                total=total, unit="history", desc="recommending", disable=args.no_progress, file=sys.stderr
            ) as progress,
        ):
            for batch in _batches(handle, args.batch_size):
                parsed = []
                for number, line in batch:
                    try:
                        parsed.append((number, *_parse_line(line)))
                    except ValueError as err:
                        fail(number, str(err))
                answers = _answer(recommender, parsed, options, fail)
                for (_, user_id, _), answer in zip(parsed, answers, strict=True):
                    if answer is not None:
                        out.write(json.dumps({"user_id": user_id, **answer.to_dict()}, ensure_ascii=False) + "\n")
                progress.update(len(batch))
    except BaseException:
        if target:
            out.close()
            os.unlink(f"{target}.partial")
        raise
    if target:
        out.close()
        _keep_or_replace(target, nothing_answered=failures > 0 and failures == total)
    if failures:
        print(f"bert4rec recommend: {failures} of {total} line(s) failed; the others were answered", file=sys.stderr)
    return failures


def _keep_or_replace(target: Path, nothing_answered: bool) -> None:
    """Moves the finished ``TARGET.partial`` onto ``target``, unless no line was
    answered and ``target`` exists: an earlier run's output is not lost to an empty file."""
    if nothing_answered and target.exists():
        os.unlink(f"{target}.partial")
        print(f"bert4rec recommend: no line was answered; {target} was left as it was", file=sys.stderr)
    else:
        os.replace(f"{target}.partial", target)


def _answer(recommender: Any, parsed: list[tuple[int, Any, list[Any]]], options: dict[str, Any], fail: Any) -> list:
    """One batched call; when it fails, one call per line, so the error names the line."""
    if not parsed:
        return []
    try:
        return recommender.recommend([history for _, _, history in parsed], **options)
    except (KeyError, ValueError, TypeError):
        answers = []
        for number, _, history in parsed:
            try:
                answers.append(recommender.recommend([history], **options)[0])
            except (KeyError, ValueError, TypeError) as err:
                fail(number, _cli_message(err))
                answers.append(None)
        return answers


def _recommend(args: argparse.Namespace) -> int:
    from ..recommendation import Bert4RecRecommender

    if (args.history is None) == (args.input is None):
        raise ValueError("give either --history or --input")
    if args.output and args.input is None:
        raise ValueError("--output goes with --input (a JSONL file of histories)")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be a positive integer, got {args.batch_size}")
    recommender = Bert4RecRecommender.from_pretrained(args.model_dir, device=args.device)
    options = {
        "k": args.k,
        "exclude_history": {"all": True, "window": "window", "none": False, None: None}[_exclude_history(args)],
        "allow_items": args.allow,
        "deny_items": args.deny,
        "unknown": args.unknown,
        "on_empty": args.on_empty,
        "batch_size": args.batch_size,
    }
    try:
        recommender.check_options(**options)  # once, before --output is opened
        if args.history is not None:
            _print_answer(recommender.recommend(args.history, **options), args.json)
            return 0
    except (KeyError, ValueError) as err:
        raise ValueError(_cli_message(err)) from None
    return 1 if _recommend_file(recommender, args, options) else 0


def _print_answer(result: Any, as_json: bool) -> None:
    """``--history``'s answer: one JSON object (for scripts) or a table (for people)."""
    if as_json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        _print_table(result)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "recommend", help="top-k items for a history (--history) or a JSONL file of histories (--input)"
    )
    parser.add_argument("model_dir", help="a saved model folder (or Hub repository)")
    parser.add_argument(
        "--history", type=_id_list, metavar="IDS",
        help='raw item ids, oldest first: "50 172 133" or "50,172,133", or @FILE with one id per line',
    )  # fmt: skip
    parser.add_argument("--input", metavar="JSONL", help='lines {"user_id": ..., "history": [...]}')
    parser.add_argument("--output", metavar="JSONL", help="where --input's recommendations go (default: stdout)")
    parser.add_argument("-k", type=int, default=10, help="items per history (default 10)")
    parser.add_argument(
        "--exclude-history", choices=["all", "window", "none"],
        help="leave out every history item (all), only those the model reads (window), or none; default: the "
        "model's (all, or none for a model trained on a log where people come back to items: see its model card)",
    )  # fmt: skip
    parser.add_argument("--exclude-seen", choices=["all", "window", "none"], help=argparse.SUPPRESS)  # former name
    parser.add_argument(
        "--allow", type=_id_list, metavar="IDS",
        help='candidate items only: "1 2 3" / "1,2,3", or @FILE with one id per line (ids may hold spaces)',
    )  # fmt: skip
    parser.add_argument(
        "--deny", type=_id_list, metavar="IDS",
        help='items never recommended: "1 2 3" / "1,2,3", or @FILE with one id per line (ids may hold spaces)',
    )  # fmt: skip
    parser.add_argument(
        "--unknown", choices=["error", "ignore"], default="error", help="item ids outside the vocabulary"
    )
    parser.add_argument(
        "--on-empty", choices=["error", "popular"], default="error",
        help="an empty history: an error, or the model's context-free ranking",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=256, help="histories per forward pass")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--json", action="store_true", help="print --history's answer as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=_recommend)


def _exclude_history(args: argparse.Namespace) -> str:
    """``--exclude-seen`` is the former name of ``--exclude-history``: it still works, with a warning."""
    if args.exclude_seen is None:
        return args.exclude_history
    print("warning: --exclude-seen is deprecated; use --exclude-history", file=sys.stderr)
    return args.exclude_seen
