"""Subcommands of the ``bert4rec`` command line, one module each.

A module here defines ``register(commands)``, which adds its parser to the
``argparse`` sub-parsers and sets ``handler`` (a function of the parsed
arguments returning an exit code). ``bert4rec_hf.cli`` finds them all.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil


def register_all(commands: argparse._SubParsersAction) -> None:
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        module.register(commands)


def add_run_options(parser: argparse.ArgumentParser, recipe: bool = False) -> None:
    """The configuration options shared by commands that read a data set; ``recipe``:
    also ``--recipe`` (commands that train: a saved model's folder already records its settings)."""
    parser.add_argument("--dataset", help="a registered data set (ml-100k is bundled) or a name for --set data_path=...")
    if recipe:
        from ..training.config import recipes

        parser.add_argument(
            "--recipe", metavar="NAME",
            help="named settings measured for the data set, above its own file (shipped: "
            + "; ".join(f"{name} for {', '.join(sets)}" for name, sets in recipes().items()) + ")",
        )  # fmt: skip
    parser.add_argument("--config-files", nargs="+", default=[], metavar="YAML", help="user config files, in order")
    parser.add_argument(
        "--set", nargs="+", default=[], metavar="KEY=VALUE", dest="overrides", help="override config keys"
    )


def run_overrides(args: argparse.Namespace, pairs: list[str]) -> dict:
    """The keyword layer of a command: its ``--set`` pairs and, when given, ``--recipe``."""
    from ..training.config import ConfigError, parse_overrides

    overrides = parse_overrides(pairs)
    recipe = getattr(args, "recipe", None)
    if recipe is not None:
        if overrides.get("recipe", recipe) != recipe:
            raise ConfigError(f"--recipe {recipe} and --set recipe={overrides['recipe']} disagree: give one")
        overrides["recipe"] = recipe
    return overrides
