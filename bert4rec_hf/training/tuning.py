"""Hyper-parameter search with ``Trainer.hyperparameter_search`` (optuna), RecBole's ``run_hyper``.

How a trial maps onto the Trainer's search (transformers 5):

- ``hyperparameter_search(backend="optuna")`` runs the optuna study and calls
  ``trainer.train(trial=trial)`` once per trial. Inside ``train``,
  ``model_init(trial)`` builds the model from the trial's configuration, and
  ``hp_space(trial)`` may only set ``TrainingArguments`` fields.
- A trial may also change the data (``max_seq_length``, ``train_stride``), the
  Cloze collator (``mask_ratio``, ...) or early stopping (``stopping_step``),
  which neither hook can reach. So :class:`Bert4RecTuningTrainer` overrides
  ``train``: before handing over to ``Trainer.train`` it resolves the trial's
  configuration with ``load_config`` and takes the arguments, data, collators,
  evaluator and callbacks of ``pipeline.build_trainer`` for that configuration.
  Each trial is therefore exactly a normal training run (same seed, same model
  initialisation, early stopping, best model restored); leave-one-out data is
  prepared once per distinct data configuration.
- The Trainer scores a trial by its *last* evaluation; the override scores it
  by the restored best model on the validation users (``valid_<valid_metric>``,
  maximised), and also records its test metrics and time.
- The best model so far is saved with ``pipeline.save_run`` into
  ``<output_dir>/best``: a folder like ``bert4rec train`` writes, including the
  ``run_config.yaml`` that retrains it. ``trials.csv`` and ``trials.json`` are
  rewritten after every trial, so an interrupted search leaves its table behind.

Samplers: only ``choice`` parameters -> optuna's ``GridSampler`` over every
combination (RecBole's ``exhaustive``); otherwise ``TPESampler``. Both are seeded
with the configuration's ``seed``. Pruning is off (each trial runs until early
stopping), ``timeout`` is optuna's (checked between trials). Invalid combinations
(e.g. ``hidden_size`` not divisible by ``n_heads``) fail their trial, are listed
with the error, and the search goes on. One process only.
"""

from __future__ import annotations

import csv
import gc
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import EarlyStoppingCallback, set_seed

from .auto_schedule import AutoSchedule
from .config import ConfigError, RunConfig, load_config
from .hyper_space import HyperSpace, read_hyper_space
from .pipeline import (
    CHECKPOINTS,
    NOT_DATA_KEYS,
    TRAINING_ARGUMENTS,
    PreparedData,
    build_model_for,
    build_scheduled_trainer,
    build_trainer,
    check_output_dir,
    check_valid_metric,
    evaluate_splits,
    prepare_data,
    remove_checkpoints,
    save_run,
)
from .reporting import write_json
from .trainer import Bert4RecTrainer
from .weight_averaging import WeightAverage

logger = logging.getLogger(__name__)

BEST = "best"
SEARCH_FILES = (BEST, "trials.csv", "trials.json")
DEFAULT_TRIALS = 20
SAMPLERS = ("auto", "grid", "tpe", "random")


@dataclass
class TrialResult:
    """One trial: its parameters, metrics of the restored best model, time."""

    number: int
    params: dict[str, Any]
    state: str = "complete"  # complete | failed
    valid: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)
    epochs: float | None = None
    seconds: float = 0.0
    error: str | None = None

    def score(self, metric: str, split: str = "valid") -> float | None:
        return getattr(self, split).get(f"{split}_{metric}")


@dataclass
class TuningResult:
    """Every trial of a search and the best one (by ``valid_<metric>``)."""

    metric: str
    sampler: str
    space: HyperSpace
    trials: list[TrialResult]
    best: TrialResult
    best_dir: Path
    seconds: float

    @property
    def best_params(self) -> dict[str, Any]:
        return dict(self.best.params)

    def rows(self) -> list[dict[str, Any]]:
        """One flat dict per trial: parameters, validation and test metric, epochs, seconds."""
        return [
            {
                "trial": trial.number,
                **{name: trial.params.get(name) for name in self.space.names},
                f"valid_{self.metric}": trial.score(self.metric, "valid"),
                f"test_{self.metric}": trial.score(self.metric, "test"),
                "epochs": trial.epochs,
                "seconds": round(trial.seconds, 1),
                "state": trial.state,
                "error": trial.error or "",
            }
            for trial in self.trials
        ]

    def table(self) -> str:
        """The trials as a Markdown table; the best one is marked with ``*``."""
        rows = self.rows()
        failed = any(row["state"] != "complete" for row in rows)
        columns = [c for c in rows[0] if c not in ("state", "error") or failed]
        lines = ["| " + " | ".join(columns) + " |", "|" + "---:|" * len(columns)]
        for row in rows:
            cells = [_cell(column, row[column]) for column in columns]
            if row["trial"] == self.best.number:
                cells[0] += " *"
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def summary(self) -> str:
        best = self.best
        return (
            f"Best trial {best.number} of {len(self.trials)} ({self.sampler}): {self.best_params}\n"
            f"  valid {self.metric} {best.score(self.metric, 'valid'):.4f}, "
            f"test {self.metric} {best.score(self.metric, 'test'):.4f}; model saved to {self.best_dir}\n"
            f"  search time {self.seconds:.0f} s"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": f"valid_{self.metric}",
            "direction": "maximize",
            "sampler": self.sampler,
            "space": self.space.as_dict(),
            "space_file": self.space.source,
            "best_trial": self.best.number,
            "best_params": self.best_params,
            "best_dir": str(self.best_dir),
            "seconds": self.seconds,
            "trials": [asdict(trial) for trial in self.trials],
        }

    def write(self, output_dir: str | os.PathLike) -> tuple[Path, Path]:
        """``trials.csv`` (the table) and ``trials.json`` (every metric of every trial)."""
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        csv_path = output_dir / "trials.csv"
        rows = self.rows()
        with csv_path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return csv_path, write_json(output_dir / "trials.json", self.to_dict())


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if column.startswith(("valid_", "test_")):
        return f"{value:.4f}"
    if column == "seconds":
        return f"{value:.1f}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def save_best(
    trainer: Bert4RecTrainer,
    config: RunConfig,
    data: PreparedData,
    results: Mapping[str, Mapping[str, float]],
    best_dir: Path,
    seconds: float,
) -> None:
    """Saves a new best model into a temporary sibling of ``best_dir`` and swaps
    it in only once complete: a save that fails part-way keeps the earlier best."""
    if not trainer.is_world_process_zero():
        return
    staging = Path(tempfile.mkdtemp(prefix=f".{best_dir.name}-new-", dir=best_dir.parent))
    try:
        save_run(trainer, config, data, results, staging, seconds)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    retired = Path(tempfile.mkdtemp(prefix=f".{best_dir.name}-old-", dir=best_dir.parent))
    if best_dir.exists():
        best_dir.rename(retired / best_dir.name)
    staging.rename(best_dir)
    shutil.rmtree(retired)


class Bert4RecTuningTrainer(Bert4RecTrainer):
    """A ``Bert4RecTrainer`` whose ``hyperparameter_search`` trials may change any
    model, data or training key of the run configuration (see the module docstring).

    Args:
        space: the search space (``read_hyper_space("hyper.test")``).
        dataset, config_file_list, config_dict: the base configuration, as for
            ``load_config``; each trial overrides the keys of ``space``.
        output_dir: where trial checkpoints (removed after each trial) and the
            best model (``best/``) go.
    """

    def __init__(
        self,
        space: HyperSpace,
        dataset: str | None = None,
        config_file_list: Sequence[str | os.PathLike] | None = None,
        config_dict: Mapping[str, Any] | None = None,
        output_dir: str | os.PathLike = "outputs/tuning",
    ):
        self.space = space
        self.config_layers = (dataset, list(config_file_list or []), dict(config_dict or {}))
        check_valid_metric(load_config(*self.config_layers))
        self.tuning_dir = Path(output_dir)
        self.trials: list[TrialResult] = []
        self.best_trial: TrialResult | None = None
        self._sampler_name, self._search_start = "", time.perf_counter()
        self._prepared_data: dict[tuple, PreparedData] = {}
        self._configs: dict[int | None, RunConfig] = {}
        self.base_config = self.trial_config()
        template = build_trainer(self.base_config, self.prepared(self.base_config), self.tuning_dir)
        super().__init__(
            model_init=self.model_for_trial,
            args=template.args,
            train_dataset=template.train_dataset,
            eval_dataset=template.eval_dataset,
            data_collator=template.data_collator,
            eval_data_collator=template.eval_data_collator,
            evaluator=template.evaluator,
        )
        self._adopt(template)

    @property
    def metric(self) -> str:
        return self.base_config["valid_metric"]

    def trial_config(self, trial=None) -> RunConfig:
        """The base configuration with the trial's values (as keyword arguments), its schedule
        derived as a normal run's (``schedule: auto``) once per trial."""
        number = None if trial is None else trial.number
        if number not in self._configs:
            dataset, files, overrides = self.config_layers
            suggested = self.space.suggest(trial) if trial is not None else {}
            config = load_config(dataset, files, {**overrides, **suggested})
            schedule = AutoSchedule(config)
            schedule.before_data(config)
            if schedule.keys:  # steps and evaluations fitted to this machine, as a normal run's
                build_scheduled_trainer(config, self.prepared(config), self.tuning_dir, schedule)
            self._configs[number] = config
        return self._configs[number]

    def prepared(self, config: Mapping[str, Any]) -> PreparedData:
        """Leave-one-out data for ``config``, prepared once per distinct data configuration."""
        key = tuple((name, repr(config[name])) for name in self.space.names if name not in NOT_DATA_KEYS)
        if key not in self._prepared_data:
            self._prepared_data[key] = prepare_data(config)
        return self._prepared_data[key]

    def model_for_trial(self, trial=None):
        """``model_init``: the trial's model, initialised as a normal run's (the Trainer seeds first)."""
        config = self.trial_config(trial)
        model = build_model_for(config, self.prepared(config))
        if trial is not None:
            # A normal run builds its model before the Trainer, whose __init__ seeds again; seeding again
            # here gives the trial the same masking and batch order as `bert4rec train` with its values.
            set_seed(config["seed"])
        return model

    def hp_space_for_trial(self, trial) -> dict[str, Any]:
        """``hp_space``: the trial's values of TrainingArguments fields."""
        config = self.trial_config(trial)
        return {TRAINING_ARGUMENTS[name]: config[name] for name in self.space.names if name in TRAINING_ARGUMENTS}

    def objective_of(self, metrics: Mapping[str, float]) -> float:
        """``compute_objective``: the validation metric of an evaluation during training."""
        return metrics[f"eval_{self.metric}"]

    def _adopt(self, template: Bert4RecTrainer) -> None:
        """Takes what ``build_trainer`` sets up for a configuration, except the model."""
        for name in ("args", "train_dataset", "eval_dataset", "data_collator", "eval_data_collator", "evaluator"):
            setattr(self, name, getattr(template, name))
        self.compute_metrics = template.compute_metrics
        trial_own = (EarlyStoppingCallback, WeightAverage)  # set by the trial's configuration: the last trial's go
        for kind in trial_own:
            self.pop_callback(kind)
        own = {type(callback) for callback in self.callback_handler.callbacks}
        for callback in template.callback_handler.callbacks:
            if isinstance(callback, trial_own) or type(callback) not in own:
                self.add_callback(callback)

    def train(self, resume_from_checkpoint=None, trial=None, **kwargs):
        """A search trial: the trial's configuration, a normal run, evaluation, best model saved."""
        if trial is None or self.hp_search_backend is None:
            return super().train(resume_from_checkpoint=resume_from_checkpoint, trial=trial, **kwargs)
        number = trial.number
        params = self.space.suggest(trial)
        start = time.perf_counter()
        record = None
        try:
            config = self.trial_config(trial)
            data = self.prepared(config)
            self._adopt(build_trainer(config, data, self.tuning_dir))
            output = super().train(resume_from_checkpoint=resume_from_checkpoint, trial=trial, **kwargs)
            train_seconds = time.perf_counter() - start
            results = evaluate_splits(self, data.processed)
            record = TrialResult(
                number, params, valid=results["valid"], test=results["test"], epochs=self.state.epoch,
                seconds=time.perf_counter() - start,
            )  # fmt: skip
            if self.best_trial is None or record.score(self.metric) > self.best_trial.score(self.metric):
                save_best(self, config, data, results, self.tuning_dir / BEST, train_seconds)
                self.best_trial = record
        except Exception as err:
            record = TrialResult(number, params, state="failed", seconds=time.perf_counter() - start, error=f"{err}")
            logger.warning(f"Trial {number} {params} failed: {err}")
            raise
        finally:
            remove_checkpoints(self._get_output_dir(trial))
            if record is not None:
                self.trials.append(record)
            if self.best_trial is not None:
                self.result().write(self.tuning_dir)  # so far: a long search leaves its table behind as it goes
        self.objective = record.score(self.metric)
        return output

    def result(self) -> TuningResult:
        """The trials so far and the best of them."""
        if self.best_trial is None:
            raise ValueError("no trial has completed yet")
        return TuningResult(
            metric=self.metric,
            sampler=self._sampler_name,
            space=self.space,
            trials=sorted(self.trials, key=lambda t: t.number),
            best=self.best_trial,
            best_dir=self.tuning_dir / BEST,
            seconds=time.perf_counter() - self._search_start,
        )

    def search(self, n_trials: int | None = None, timeout: float | None = None, sampler: str = "auto") -> TuningResult:
        """Runs ``hyperparameter_search`` over the space; returns every trial and the best."""
        import optuna

        sampler_name, optuna_sampler, n_trials = self.choose_sampler(sampler, n_trials, timeout)
        logger.info(f"Searching {len(self.space)} parameters with {sampler_name}, trials={n_trials}, timeout={timeout}")
        self._sampler_name, self._search_start = sampler_name, time.perf_counter()
        # The Trainer's search runs gc.collect() three times per trial (~1 s each with transformers loaded);
        # freezing what already lives (modules, prepared data) leaves only each trial's objects to scan.
        freeze = gc.get_freeze_count() == 0
        if freeze:
            gc.freeze()
        try:
            best_run = self.hyperparameter_search(
                hp_space=self.hp_space_for_trial,
                compute_objective=self.objective_of,
                n_trials=n_trials,
                direction="maximize",
                backend="optuna",
                sampler=optuna_sampler,
                pruner=optuna.pruners.NopPruner(),
                timeout=timeout,
                catch=(ValueError, torch.OutOfMemoryError),
            )
        except ValueError:
            if self.best_trial is None:
                failures = "; ".join(f"trial {t.number} {t.params}: {t.error}" for t in self.trials)
                raise ValueError(f"no trial completed ({failures or 'none ran'})") from None
            raise
        finally:
            if freeze:
                gc.unfreeze()
            remove_checkpoints(self.tuning_dir / CHECKPOINTS)
        if self.best_trial is None or int(best_run.run_id) != self.best_trial.number:
            raise RuntimeError(f"optuna's best trial {best_run.run_id} is not the saved best model")
        return self.result()

    def choose_sampler(self, name: str, n_trials: int | None, timeout: float | None):
        """``(description, optuna sampler, number of trials)`` for a sampler name (see the module docstring)."""
        import optuna

        if name not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {name!r}")
        if n_trials is not None and n_trials < 1:
            raise ValueError(f"the number of trials must be positive, got {n_trials}")
        seed = self.base_config["seed"]
        if name == "auto":
            name = "grid" if self.space.is_grid else "tpe"
        if name == "grid":
            size = self.space.grid_size
            n_trials = size if n_trials is None else min(n_trials, size)
            return f"grid ({size} combinations)", optuna.samplers.GridSampler(self.space.grid(), seed=seed), n_trials
        if n_trials is None and timeout is None:
            n_trials = DEFAULT_TRIALS
        if name == "tpe":
            return "tpe", optuna.samplers.TPESampler(seed=seed), n_trials
        return "random", optuna.samplers.RandomSampler(seed=seed), n_trials


def tune_bert4rec(
    params_file: str | os.PathLike | HyperSpace,
    dataset: str | None = None,
    config_file_list: Sequence[str | os.PathLike] | None = None,
    config_dict: Mapping[str, Any] | None = None,
    output_dir: str | os.PathLike | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    sampler: str = "auto",
    overwrite: bool = False,
) -> TuningResult:
    """RecBole's ``run_hyper``: searches the space of a ``hyper.test`` file, prints
    every trial and the best parameters, writes ``trials.csv``/``trials.json`` and
    the best model (``<output_dir>/best``, default ``outputs/<dataset>-tuning``).
    A folder holding an earlier search is refused unless ``overwrite``."""
    space = params_file if isinstance(params_file, HyperSpace) else read_hyper_space(params_file)
    base = load_config(dataset, config_file_list, config_dict)
    if base["next_item_branches"] != 1 or "next_item_branches" in space.names:
        raise ConfigError(
            "tuning trains each trial once, without next_item_branches; search with next_item_branches: 1, "
            "then train the best parameters with branches"
        )
    distillation = ("distill_from", "distill_teachers", "distillation_weight", "teacher_overrides")
    if any(base[key] for key in distillation) or any(key in space.names for key in distillation):
        raise ConfigError(
            "tuning trains each trial without teachers; search without distill_from / distill_teachers / "
            "teacher_overrides, then train the best parameters distilled"
        )
    output_dir = Path(output_dir or Path("outputs") / f"{base['dataset']}-tuning")
    check_output_dir(output_dir, overwrite, SEARCH_FILES)
    trainer = Bert4RecTuningTrainer(space, dataset, config_file_list, config_dict, output_dir=output_dir)
    print(f"Tuning {len(space)} parameters from {space.source} on {base['dataset']}, maximising valid_{trainer.metric}")
    result = trainer.search(n_trials=n_trials, timeout=timeout, sampler=sampler)
    csv_path, json_path = result.write(output_dir)
    print(f"\n{result.table()}\n\n{result.summary()}\nTrials written to {csv_path} and {json_path}")
    return result


__all__ = ["Bert4RecTuningTrainer", "TrialResult", "TuningResult", "tune_bert4rec"]
