"""Layered run configuration, resolved the way RecBole resolves it.

Precedence: package defaults (``overall.yaml``) < model (``model/bert4rec.yaml``)
< data set (``dataset/<name>.yaml``) < recipe (``recipe/<recipe>/<name>.yaml``,
when a layer sets ``recipe``) < user YAML files (in order) < keyword arguments.
The known keys and their types come from the two default files; an unknown key
or a value of the wrong type is an error naming the key and the file it came from.

A recipe is a named set of settings measured for one data set (``paper``: the
BERT4Rec authors' own; ``fullrank``: the paper's with the changes measured best under
full ranking; ``nextitem``: fullrank on next-item rows); it sits above the data set's file so that a data set's
defaults can move on while the settings it was published with stay one flag away.
A recipe may be ``based_on`` another, whose settings it then changes.
"""

from __future__ import annotations

import datetime
import difflib
import importlib.resources
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ..configuration_bert4rec import ITEM_FEATURE_FUSIONS
from ..data import FORMATS, MaskingArguments
from ..data.readers import parse_time
from ..data.splits import SPLIT_KINDS, TEMPORAL_TARGETS

CONFIG_PACKAGE = "bert4rec_hf.configuration"
KEYWORD_SOURCE = "keyword arguments"

# Types of the keys whose default is null (the others take the type of their default).
_NULLABLE_TYPES: dict[str, tuple[type, ...]] = {
    "data_path": (str,),
    "data_format": (str,),
    "field_separator": (str,),
    "user_column": (str, int),
    "item_column": (str, int),
    "time_column": (str, int),
    "rating_threshold": (float, int),
    "dedup": (str,),
    "train_stride": (int,),
    "eval_steps": (int,),
    "save_steps": (int,),
    "average_weights_every": (int,),
    "time_budget": (float, int),
    "output_dir": (str,),
    "torch_threads": (int,),
    "split_cutoff": (str, int, float, datetime.date),  # YAML reads an unquoted 1998-03-01 as a date
    "split_validation_cutoff": (str, int, float, datetime.date),
    "item_features": (list,),
    "item_features_path": (str,),
    "recipe": (str,),
    "distill_from": (list,),
}
# Keys that take more than the type of their default.
_WIDER_TYPES: dict[str, tuple[type, ...]] = {"exclude_history": (bool, str)}
_CHOICES: dict[str, tuple[Any, ...]] = {
    "exclude_history": (True, False, "window"),
    "data_format": (None, *FORMATS),
    "dedup": (None, "consecutive", "all"),
    "eval_mode": ("full", "uni100", "pop100"),
    "fit_vocabulary_on": ("all", "train"),
    "split": SPLIT_KINDS,
    "split_targets": TEMPORAL_TARGETS,
    "item_features_missing": ("error", "neutral"),
    "item_feature_fusion": ITEM_FEATURE_FUSIONS,
    "schedule": ("auto", "fixed"),
}


class ConfigError(ValueError):
    """A configuration value or file is invalid; the message names key and file."""


def config_dir() -> Path:
    """The folder of shipped YAML files (``configuration/`` in the repository)."""
    return Path(str(importlib.resources.files(CONFIG_PACKAGE)))


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; people write learning rates that way."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` that also reads exponent floats without a dot (``1e-3``)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def read_text_file(path: str | os.PathLike, error: type[Exception] | None = None) -> str:
    """A UTF-8 text file (a byte-order mark is dropped); a file that is not UTF-8
    is an ``error`` naming the file and line."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise (error or ConfigError)(
            f"{path}: line {line}: not UTF-8 text (byte {data[err.start]:#04x}); save the file as UTF-8"
        ) from None


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Reads one YAML mapping; syntax errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file not found")
    try:
        data = parse_yaml(read_text_file(path))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} invalid YAML: {getattr(err, 'problem', err)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a configuration file must hold a mapping of key: value, got {type(data).__name__}")
    return data


def _defaults() -> tuple[dict[str, Any], dict[str, Any]]:
    root = config_dir()
    return read_yaml(root / "overall.yaml"), read_yaml(root / "model" / "bert4rec.yaml")


def package_defaults() -> dict[str, Any]:
    """Every setting's value in the package's own files (``overall.yaml``, ``model/bert4rec.yaml``)."""
    overall, model = _defaults()
    return {**overall, **model}


def _expected_types(defaults: Mapping[str, Any]) -> dict[str, tuple[type, ...]]:
    types: dict[str, tuple[type, ...]] = {}
    for key, value in defaults.items():
        if key in _WIDER_TYPES:
            types[key] = _WIDER_TYPES[key]
        elif value is None:
            types[key] = _NULLABLE_TYPES[key]
        elif isinstance(value, bool):
            types[key] = (bool,)
        elif isinstance(value, float):
            types[key] = (float, int)
        else:
            types[key] = (type(value),)
    return types


def _check(key: str, value: Any, types: Mapping[str, tuple[type, ...]], source: str) -> Any:
    if key not in types:
        close = difflib.get_close_matches(key, list(types), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"{source}: unknown configuration key '{key}'{hint}")
    allowed = types[key]
    nullable = key in _NULLABLE_TYPES
    if value is None and nullable:
        return value
    bad_bool = isinstance(value, bool) and bool not in allowed
    if bad_bool or not isinstance(value, allowed):
        names = " or ".join(t.__name__ for t in allowed) + (" or null" if nullable else "")
        raise ConfigError(f"{source}: '{key}' must be {names}, got {value!r}")
    if key in _CHOICES and value not in _CHOICES[key]:
        raise ConfigError(f"{source}: '{key}' must be one of {list(_CHOICES[key])}, got {value!r}")
    if key in MaskingArguments.keys():
        try:
            MaskingArguments.check(key, value)
        except ValueError as err:
            raise ConfigError(f"{source}: '{key}'{str(err).removeprefix(key)}") from None
    if key in ("split_cutoff", "split_validation_cutoff"):
        try:
            parse_time(value, key)
        except ValueError as err:
            raise ConfigError(f"{source}: {err}") from None
    if key in ("split_test_share", "split_validation_share") and not 0 < value < 1:
        raise ConfigError(f"{source}: '{key}' must be a share of the log between 0 and 1 (exclusive), got {value!r}")
    if key == "save_steps" and value < 1:
        raise ConfigError(f"{source}: 'save_steps' must be a positive number of steps or null (checkpoints at evaluations only), got {value!r}")
    if key == "torch_threads" and value < 1:
        raise ConfigError(f"{source}: 'torch_threads' must be a positive number of threads or null (adapt), got {value!r}")
    if key == "item_features" and (not value or not all(isinstance(name, str) and name for name in value)):
        raise ConfigError(f"{source}: 'item_features' must be a non-empty list of column names (name or name:kind), got {value!r}")
    if key == "next_item_share" and not 0.0 <= value <= 1.0:
        raise ConfigError(f"{source}: 'next_item_share' must be a share of the steps in [0, 1], got {value!r}")
    if key == "average_weights_share" and not 0.0 <= value <= 1.0:
        raise ConfigError(f"{source}: 'average_weights_share' must be a share of the steps in [0, 1] (0: off), got {value!r}")
    if key == "average_weights_every" and value < 1:
        raise ConfigError(f"{source}: 'average_weights_every' must be a positive number of steps or null (about six intervals), got {value!r}")
    if key == "next_item_branches" and value < 1:
        raise ConfigError(f"{source}: 'next_item_branches' must be a positive number of branches, got {value!r}")
    if key == "distill_from" and (not value or not all(isinstance(folder, str) and folder for folder in value)):
        raise ConfigError(f"{source}: 'distill_from' must be a non-empty list of model folders or null, got {value!r}")
    if key == "distill_teachers" and value < 0:
        raise ConfigError(f"{source}: 'distill_teachers' must be a number of teacher runs (0: none), got {value!r}")
    if key == "teacher_overrides":  # each setting checked as the run's own; what a teacher may change: check_teacher_data
        return {str(name): _check(str(name), setting, types, f"{source}: 'teacher_overrides'") for name, setting in value.items()}
    if key == "cold_item_share" and not 0.0 <= value < 1.0:
        raise ConfigError(f"{source}: 'cold_item_share' must be in [0, 1), got {value!r}")
    if key == "topk" and (not value or not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in value)):
        raise ConfigError(f"{source}: 'topk' must be a non-empty list of positive integers, got {value!r}")
    if isinstance(value, float) and float in allowed:
        return float(value)
    return value


def _merge(config: dict[str, Any], sources: dict[str, str], layer: Mapping[str, Any], source: str, types) -> None:
    for key, value in layer.items():
        config[key] = _check(str(key), value, types, source)
        sources[key] = source


_NULL_SPELLINGS = ("null", "Null", "NULL", "~")


def _override_value(key: str, raw: str) -> Any:
    """A ``--set`` value parsed as YAML, except that text YAML would read as nothing
    (``|``, ``#``, a tab: field separators) stays the text it is; ``key=`` is null."""
    if not raw:
        return None
    if not raw.strip():
        return raw
    try:
        value = parse_yaml(raw)
    except yaml.YAMLError:
        raise ConfigError(f"--set {key}: cannot parse value {raw!r}") from None
    if value is None and raw.strip() not in _NULL_SPELLINGS:
        return raw
    if value == "" and raw.strip() not in ('""', "''"):
        return raw
    return value


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``["key=value", ...]`` from a command line; values are parsed as YAML."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        overrides[key.strip()] = _override_value(key.strip(), raw)
    return overrides


def _dataset_name(default: str, layers: Sequence[Mapping[str, Any]]) -> Any:
    """The data set a run names; a run that gives only ``data_path`` is named after
    the file (``clicks.csv.gz`` -> ``clicks``), so the package's default data set
    (ml-100k) lends it neither its YAML settings nor its output folder."""
    named = _layer_value("dataset", layers)
    if named is not None:
        return named
    paths = [layer["data_path"] for layer in layers if layer.get("data_path")]
    if paths and isinstance(paths[-1], str):
        file_name = Path(paths[-1]).name.removesuffix(".gz")
        return Path(file_name).stem or default
    return default


def _layer_value(key: str, layers: Sequence[Mapping[str, Any]]) -> Any:
    """The value the last layer naming ``key`` gives it (None when none does)."""
    named = [layer[key] for layer in layers if key in layer]
    return named[-1] if named else None


def recipes() -> dict[str, list[str]]:
    """The shipped recipes, each with the data sets it has settings for."""
    root = config_dir() / "recipe"
    folders = sorted(path for path in root.iterdir() if path.is_dir()) if root.is_dir() else []
    return {folder.name: sorted(path.stem for path in folder.glob("*.yaml")) for folder in folders}


def recipe_file(recipe: Any, dataset: str) -> Path:
    """The YAML file of ``recipe`` for ``dataset``; an unknown recipe, or one with no
    settings for the data set, is an error that lists what ships."""
    shipped = recipes()
    if recipe not in shipped:
        known = ", ".join(shipped) or "none"
        raise ConfigError(f"recipe {recipe!r} is not shipped (recipes: {known})")
    path = config_dir() / "recipe" / str(recipe) / f"{dataset}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"recipe {recipe!r} has no settings for data set {dataset!r} (it has them for: {', '.join(shipped[recipe])})"
        )
    return path


_RECIPE_FORBIDDEN = ("recipe", "dataset", "data_path")


def _recipe_layer(path: Path) -> dict[str, Any]:
    """A recipe's settings; a recipe chooses settings, not the data or another recipe
    (``based_on``, the one it starts from, stays in the layer for ``recipe_layers``)."""
    layer = read_yaml(path)
    for key in _RECIPE_FORBIDDEN:
        if key in layer:
            raise ConfigError(f"{path}: a recipe cannot set '{key}'")
    return layer


def recipe_layers(recipe: Any, dataset: str) -> list[tuple[Path, dict[str, Any]]]:
    """The layers of ``recipe`` for ``dataset``, lowest first: a recipe whose file says
    ``based_on: OTHER`` sits on OTHER's settings for the same data set, so it is written
    as its changes to a published recipe and that recipe's values keep one home."""
    chain: list[tuple[Path, dict[str, Any]]] = []
    path = recipe_file(recipe, dataset)
    while True:
        layer = _recipe_layer(path)
        base = layer.pop("based_on", None)
        chain.insert(0, (path, layer))
        if base is None:
            return chain
        try:
            path = recipe_file(base, dataset)
        except ConfigError as err:
            raise ConfigError(f"{chain[0][0]}: based_on: {err}") from None
        if any(path == seen for seen, _ in chain):
            raise ConfigError(f"{chain[0][0]}: based_on {base!r} leads back to itself")


class RunConfig(dict):
    """The resolved configuration: a dict that remembers where each value came from."""

    def __init__(self, values: Mapping[str, Any], sources: Mapping[str, str]):
        super().__init__(values)
        self.sources = dict(sources)

    def source_of(self, key: str) -> str:
        return self.sources.get(key, "package defaults")

    def is_package_default(self, key: str) -> bool:
        """True when no layer above the package's own files (``overall.yaml``,
        ``model/bert4rec.yaml``) set ``key``: no data set YAML, user file or keyword."""
        root = config_dir()
        own = {"package defaults", str(root / "overall.yaml"), str(root / "model" / "bert4rec.yaml")}
        return self.source_of(key) in own


def load_config(
    dataset: str | None = None,
    config_file_list: Sequence[str | os.PathLike] | None = None,
    config_dict: Mapping[str, Any] | None = None,
) -> RunConfig:
    """Resolves the run configuration from all layers (see the module docstring)."""
    overall, model = _defaults()
    types = _expected_types({**overall, **model})
    config: dict[str, Any] = {}
    sources: dict[str, str] = {}
    root = config_dir()
    _merge(config, sources, overall, str(root / "overall.yaml"), types)
    _merge(config, sources, model, str(root / "model" / "bert4rec.yaml"), types)

    user_layers = [(str(path), read_yaml(path)) for path in (config_file_list or [])]
    keyword_layer = dict(config_dict or {})
    if dataset is not None:
        keyword_layer.setdefault("dataset", dataset)
    name = _dataset_name(config["dataset"], [layer for _, layer in [*user_layers, (KEYWORD_SOURCE, keyword_layer)]])
    dataset_file = root / "dataset" / f"{name}.yaml"
    dataset_layer = read_yaml(dataset_file) if dataset_file.is_file() else {}
    _merge(config, sources, dataset_layer, str(dataset_file), types)
    recipe = _layer_value("recipe", [dataset_layer, *(layer for _, layer in user_layers), keyword_layer])
    if recipe is not None:
        for recipe_path, layer in recipe_layers(recipe, name):
            _merge(config, sources, layer, str(recipe_path), types)
    for source, layer in user_layers:
        _merge(config, sources, layer, source, types)
    _merge(config, sources, keyword_layer, KEYWORD_SOURCE, types)
    if name != config["dataset"]:  # named after data_path, not by any layer
        sources["dataset"] = f"the file name of data_path ({sources['data_path']})"
    config["dataset"] = name
    resolved = RunConfig(config, sources)
    if resolved["truncate_ranks"] and str(resolved["valid_metric"]).lower() == "mrr":
        raise ConfigError(
            f"{resolved.source_of('valid_metric')}: valid_metric 'mrr' (uncut) needs exact ranks, but truncate_ranks "
            f"is true ({resolved.source_of('truncate_ranks')}); use an @K metric such as 'mrr@10'"
        )
    if resolved["contrastive_weight"] > 0 and resolved["num_views"] < 2:
        raise ConfigError(
            f"{resolved.source_of('contrastive_weight')}: contrastive_weight {resolved['contrastive_weight']} compares "
            f"masked copies of each window, but num_views is {resolved['num_views']} ({resolved.source_of('num_views')}); "
            "set num_views to 2 or more"
        )
    return resolved
