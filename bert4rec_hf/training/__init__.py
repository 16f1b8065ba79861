"""Training with transformers' Trainer: ranking evaluation hook, layered configuration, run outputs."""

from .config import ConfigError, RunConfig, load_config, parse_overrides, recipes
from .time_budget import TimeBudgetCallback
from .trainer import Bert4RecTrainer
from .weight_averaging import WeightAverage

__all__ = ["Bert4RecTrainer", "ConfigError", "RunConfig", "load_config", "parse_overrides", "recipes", "TimeBudgetCallback", "WeightAverage"]
