"""Search spaces in RecBole's ``hyper.test`` syntax.

One parameter a line, ``name type values``::

    learning_rate loguniform -8,0          # e^-8 .. e^0, sampled on a log scale
    hidden_dropout_prob uniform 0.1,0.5
    n_layers quniform 1,4,1                # integers 1, 2, 3, 4 (floats when a bound or q is a float)
    n_heads choice [1,2]

Bounds of ``loguniform`` are natural logarithms, as in RecBole (hyperopt's
convention). Any key of the run configuration (``load_config()``) can be tuned
except those that change which data is read or how trials are scored (see
``UNTUNABLE``). Every candidate value goes through ``load_config``'s type
checks, so a bad file fails before the first trial, naming file, line and problem.
"""

from __future__ import annotations

import ast
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .config import KEYWORD_SOURCE, ConfigError, load_config, parse_yaml, read_text_file

KINDS = ("choice", "uniform", "loguniform", "quniform")
_LOG_BOUNDS = (-700, 700)  # e^-745 underflows to 0 and e^710 overflows a float

_DATA_IDENTITY = "it selects which interactions are read; tune on one data set per search"
_POPULATION = "it changes which users and items are evaluated, so trials would not be comparable"
_YARDSTICK = "it changes how trials are scored; set it for the whole search (--set or a config file)"
UNTUNABLE: dict[str, str] = {
    **dict.fromkeys(
        ("dataset", "data_path", "data_format", "field_separator", "user_column", "item_column", "time_column"),
        _DATA_IDENTITY,
    ),
    **dict.fromkeys(
        ("rating_threshold", "dedup", "min_user_interactions", "min_item_interactions", "fit_vocabulary_on"),
        _POPULATION,
    ),
    **dict.fromkeys(("valid_metric", "eval_mode", "exclude_history", "topk"), _YARDSTICK),
    "output_dir": "the search chooses the output folder (--output-dir)",
}


class HyperSpaceError(ConfigError):
    """A search-space file is invalid; the message starts with ``file:line:``."""


@dataclass(frozen=True)
class HyperParameter:
    """One line of a search space: a ``choice`` list or a ``[low, high]`` range."""

    name: str
    kind: str
    values: tuple[Any, ...] = ()
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    line: int = 0

    @property
    def is_integer(self) -> bool:
        return self.kind == "quniform" and all(isinstance(v, int) for v in (self.low, self.high, self.step))

    def suggest(self, trial) -> Any:
        """This parameter's value in an optuna trial (repeated calls return the same value)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.values))
        if self.kind == "uniform":
            return trial.suggest_float(self.name, self.low, self.high)
        if self.kind == "loguniform":
            return trial.suggest_float(self.name, math.exp(self.low), math.exp(self.high), log=True)
        if self.is_integer:
            return trial.suggest_int(self.name, self.low, self.high, step=self.step)
        value = trial.suggest_float(self.name, self.low, self.high, step=self.step)
        return float(f"{value:.12g}")  # low + k * step without floating-point noise

    def describe(self) -> str:
        if self.kind == "choice":
            return f"choice {list(self.values)}"
        bounds = f"{self.low},{self.high}" + (f",{self.step}" if self.kind == "quniform" else "")
        if self.kind == "loguniform":
            return f"loguniform {bounds} (e^{self.low} .. e^{self.high})"
        return f"{self.kind} {bounds}"


@dataclass(frozen=True)
class HyperSpace:
    """The parameters of a search, in file order."""

    parameters: tuple[HyperParameter, ...]
    source: str = "<string>"

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]

    @property
    def is_grid(self) -> bool:
        """Only ``choice`` parameters: the space can be searched exhaustively."""
        return all(p.kind == "choice" for p in self.parameters)

    def grid(self) -> dict[str, list[Any]]:
        """``{name: values}`` for optuna's ``GridSampler``."""
        ranges = [p.name for p in self.parameters if p.kind != "choice"]
        if ranges:
            raise HyperSpaceError(f"{self.source}: a grid needs choice parameters only; {ranges} are ranges")
        return {p.name: list(p.values) for p in self.parameters}

    @property
    def grid_size(self) -> int:
        return math.prod(len(values) for values in self.grid().values())

    def suggest(self, trial) -> dict[str, Any]:
        """``{name: value}`` of every parameter in an optuna trial."""
        return {p.name: p.suggest(trial) for p in self.parameters}

    def as_dict(self) -> dict[str, str]:
        """``{name: "type values"}``, for reports."""
        return {p.name: p.describe() for p in self.parameters}

    def __len__(self) -> int:
        return len(self.parameters)

    def __str__(self) -> str:
        return "\n".join(f"{p.name} {p.describe()}" for p in self.parameters)


def read_hyper_space(path: str | os.PathLike) -> HyperSpace:
    """Reads a ``hyper.test`` file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise HyperSpaceError(f"{path}: search space file not found")
    return parse_hyper_space(read_text_file(path, HyperSpaceError), source=str(path))


def parse_hyper_space(text: str, source: str = "<string>") -> HyperSpace:
    """Parses ``hyper.test`` lines; ``source`` names the file in error messages."""
    parameters: list[HyperParameter] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _strip_comment(raw)
        if not line:
            continue
        parameter = _parse_line(line, number, source)
        if parameter.name in seen:
            raise HyperSpaceError(
                f"{source}:{number}: '{parameter.name}' is already defined on line {seen[parameter.name]}"
            )
        seen[parameter.name] = number
        parameters.append(parameter)
    if not parameters:
        raise HyperSpaceError(f"{source}: no parameters (expected lines like 'learning_rate choice [0.01,0.001]')")
    return HyperSpace(tuple(parameters), source)


# A comment starts at '#' at the start of a line, after white space or right after a choice list's ']'.
_COMMENT = re.compile(r"(?:^|(?<=\s)|(?<=\]))#.*$")


def _strip_comment(line: str) -> str:
    return _COMMENT.sub("", line.strip()).strip()


def _parse_line(line: str, number: int, source: str) -> HyperParameter:
    def fail(problem: str) -> HyperSpaceError:
        return HyperSpaceError(f"{source}:{number}: {problem}")

    parts = line.split(None, 2)
    if len(parts) < 3:
        raise fail(f"expected 'name type values', got {line!r}")
    name, kind, spec = parts
    if kind not in KINDS:
        raise fail(f"unknown type '{kind}' for '{name}' (expected one of {', '.join(KINDS)})")
    if name in UNTUNABLE:
        raise fail(f"'{name}' cannot be tuned: {UNTUNABLE[name]}")
    if kind == "choice":
        values = _parse_choices(name, spec.strip(), fail)
        for value in values:
            _check_value(name, value, fail)
        return HyperParameter(name, kind, values=values, line=number)
    low, high, step = _parse_range(name, kind, spec.strip(), fail)
    parameter = HyperParameter(name, kind, low=low, high=high, step=step, line=number)
    if parameter.is_integer:
        ends = (low, high)
    elif kind == "loguniform":
        ends = (math.exp(low), math.exp(high))
    else:
        ends = (float(low), float(high))
    for value in ends:
        _check_value(name, value, fail, draws_floats=not parameter.is_integer)
    return parameter


def _parse_choices(name: str, spec: str, fail) -> tuple[Any, ...]:
    if not spec.startswith("["):
        raise fail(f"'{name}': choice values must be a list in brackets like [0.01,0.001]; missing '[' in {spec!r}")
    if not spec.endswith("]"):
        raise fail(f"'{name}': choice list {spec!r} has no closing ']'")
    try:
        values = ast.literal_eval(spec)  # RecBole's Python syntax: ['gelu','relu'], [True, None]
    except (ValueError, SyntaxError):
        try:
            values = parse_yaml(spec)  # YAML flow syntax: [gelu, relu], [true, null]
        except yaml.YAMLError:
            raise fail(f"'{name}': cannot read the choice list {spec!r} (unbalanced brackets or quotes?)") from None
    if not isinstance(values, list):
        raise fail(f"'{name}': cannot read the choice list {spec!r}")
    if not values:
        raise fail(f"'{name}': the choice list is empty")
    for value in values:
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise fail(f"'{name}': choice values must be numbers, strings, booleans or null, got {value!r}")
    reprs = [repr(v) for v in values]
    duplicates = sorted({r for r in reprs if reprs.count(r) > 1})
    if duplicates:
        raise fail(f"'{name}': the choice list repeats {', '.join(duplicates)}")
    return tuple(values)


def _parse_range(name: str, kind: str, spec: str, fail) -> tuple[Any, Any, Any]:
    form = "lo,hi,q" if kind == "quniform" else "lo,hi"
    if spec.startswith("[") or spec.endswith("]"):
        raise fail(f"'{name}': {kind} takes '{form}' without brackets, got {spec!r}")
    tokens = [token.strip() for token in spec.split(",")]
    if len(tokens) != len(form.split(",")):
        raise fail(f"'{name}': {kind} expects '{form}', got {spec!r}")
    numbers = []
    for token in tokens:
        try:
            numbers.append(int(token))
        except ValueError:
            try:
                numbers.append(float(token))
            except ValueError:
                raise fail(f"'{name}': {token!r} is not a number (in {kind} {spec})") from None
    if not all(math.isfinite(n) for n in numbers):
        raise fail(f"'{name}': bounds must be finite numbers, got {spec!r}")
    low, high, *rest = numbers
    if low >= high:
        raise fail(f"'{name}': the lower bound {low} must be below the upper bound {high}")
    step = rest[0] if rest else None
    if step is not None and step <= 0:
        raise fail(f"'{name}': the step q must be positive, got {step}")
    if kind == "loguniform" and not _LOG_BOUNDS[0] <= low < high <= _LOG_BOUNDS[1]:
        raise fail(
            f"'{name}': loguniform bounds are natural logarithms (e^lo .. e^hi) and must lie in "
            f"[{_LOG_BOUNDS[0]}, {_LOG_BOUNDS[1]}], where e^x is a positive finite float; got {spec!r}"
        )
    return low, high, step


def _check_value(name: str, value: Any, fail, draws_floats: bool = False) -> None:
    """Runs ``value`` through load_config's checks (known key, type, allowed choices)."""
    try:
        load_config(config_dict={name: value})
    except ConfigError as err:
        problem = str(err).removeprefix(f"{KEYWORD_SOURCE}: ")
        if draws_floats and isinstance(value, float) and value.is_integer() and _accepts(name, int(value)):
            problem += " (this range draws floats; use quniform lo,hi,q with integer lo, hi and q, or choice)"
        raise fail(problem) from None


def _accepts(name: str, value: Any) -> bool:
    try:
        load_config(config_dict={name: value})
    except ConfigError:
        return False
    return True


__all__ = [
    "HyperParameter",
    "HyperSpace",
    "HyperSpaceError",
    "KINDS",
    "UNTUNABLE",
    "parse_hyper_space",
    "read_hyper_space",
]
