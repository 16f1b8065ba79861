"""Training to a wall-clock budget instead of a step budget."""

from __future__ import annotations

import math
import time
from functools import partial

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState
from transformers.utils import logging

logger = logging.get_logger(__name__)


class TimeBudgetCallback(TrainerCallback, ExportableState):
    """Ends training after ``seconds`` of wall time, with the learning-rate decay
    fitted to the steps that fit in that time.

    A step budget takes minutes on one machine and hours on another; stopping a
    decaying schedule early leaves the learning rate high and the model short
    of its best. So, after ``calibration_steps`` steps and again after every
    evaluation, the callback measures the seconds per training step and per
    evaluation, predicts the last step that ends inside
    the budget, and moves the end of the learning-rate schedule there (any
    schedule built with a ``num_training_steps`` argument: linear, cosine,
    polynomial, ...). Training stops at that step, or as soon as the budget
    is spent, with a final evaluation and checkpoint so
    ``load_best_model_at_end`` sees it; when not even one more step and its
    evaluation fit, it stops right after the evaluation just done. Never
    trains past ``max_steps``.
    The clock starts when training starts (data preparation is not counted).
    ``stopped_at`` is the step at which the budget ended training (None when
    training reached ``max_steps`` or stopped for another reason).
    Its bookkeeping travels in checkpoints: a resumed run counts the seconds
    the killed part had spent (``spent``) and keeps its fitted schedule end.
    """

    def __init__(self, seconds: float, calibration_steps: int = 50):
        if not seconds > 0:
            raise ValueError(f"time_budget must be a positive number of seconds, got {seconds!r}")
        if calibration_steps < 1:
            raise ValueError(f"calibration_steps must be >= 1, got {calibration_steps!r}")
        self.seconds = float(seconds)
        self.calibration_steps = int(calibration_steps)
        self.horizon: int | None = None
        self.stopped_at: int | None = None
        self.step_seconds: float | None = None
        self._start: float | None = None
        self._evaluation_start: float | None = None
        self._overhead = 0.0
        self._evaluations = 0
        self.spent = 0.0  # seconds of this run before a resume

    def elapsed(self) -> float:
        """Seconds of training so far (those before a resume included)."""
        return time.perf_counter() - self._start if self._start is not None else self.spent

    def state(self) -> dict:
        """What a checkpoint keeps of the budget (``ExportableState``)."""
        return {
            "args": {"seconds": self.seconds, "calibration_steps": self.calibration_steps},
            "attributes": {
                "spent": self.elapsed(),
                "horizon": self.horizon,
                "step_seconds": self.step_seconds,
                "_overhead": self._overhead,
                "_evaluations": self._evaluations,
            },
        }

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter() - self.spent
        self._evaluation_start = None
        self.stopped_at = None
        if self.spent and self.horizon:  # resumed: the schedule's end fitted before the kill
            _retarget_schedule(kwargs.get("lr_scheduler"), self.horizon)
        else:
            self._overhead, self._evaluations = 0.0, 0
            self.horizon = state.max_steps

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.calibration_steps:
            self._fit(args, state, kwargs)
        if state.global_step >= self.horizon or self.elapsed() >= self.seconds:
            self._stop(state, control)
            if args.eval_strategy != "no":
                control.should_evaluate = True
            if args.save_strategy != "no":
                control.should_save = True
        if control.should_evaluate:
            self._evaluation_start = time.perf_counter()
        return control

    def on_evaluate(self, args, state, control, **kwargs):
        if self._evaluation_start is None:  # an evaluation outside the training loop
            return control
        self._overhead += time.perf_counter() - self._evaluation_start
        self._evaluation_start = None
        self._evaluations += 1
        self._fit(args, state, kwargs)
        if state.global_step >= self.horizon:  # no further step fits: this evaluation is the last
            self._stop(state, control)
            if args.save_strategy != "no":
                control.should_save = True
        return control

    def on_train_end(self, args, state, control, **kwargs):
        logger.info(
            f"time budget {self.seconds:.0f} s: trained {state.global_step} steps in {self.elapsed():.0f} s "
            f"({self._evaluations} evaluations, {self._overhead:.0f} s)"
        )

    def _stop(self, state, control) -> None:
        control.should_training_stop = True
        if state.global_step < state.max_steps:
            self.stopped_at = state.global_step

    def _fit(self, args, state, kwargs) -> None:
        """Predicts the last step inside the budget and ends the schedule there."""
        steps = state.global_step
        if steps == 0:
            return
        self.step_seconds = max(self.elapsed() - self._overhead, 0.0) / steps
        evaluation = self._overhead / self._evaluations if self._evaluations else 0.0
        interval = self._evaluation_interval(args, state, kwargs)
        per_step = self.step_seconds + (evaluation / interval if interval else 0.0)
        remaining = self.seconds - self.elapsed() - evaluation  # the final evaluation
        more = math.floor(remaining / per_step) if per_step > 0 else state.max_steps
        self.horizon = max(steps, min(state.max_steps, steps + more))
        if _retarget_schedule(kwargs.get("lr_scheduler"), self.horizon):
            logger.info(
                f"time budget: {self.step_seconds * 1000:.0f} ms per step, {evaluation:.1f} s per evaluation; "
                f"the learning-rate schedule now ends at step {self.horizon}"
            )

    @staticmethod
    def _evaluation_interval(args, state, kwargs) -> float:
        if args.eval_strategy == "steps":
            return args.eval_steps if args.eval_steps >= 1 else args.eval_steps * state.max_steps
        if args.eval_strategy == "epoch":
            loader = kwargs.get("train_dataloader")
            return len(loader) / args.gradient_accumulation_steps if loader is not None else 0.0
        return 0.0


def _retarget_schedule(scheduler, num_training_steps: int) -> bool:
    """Moves the end of a ``LambdaLR`` schedule built by ``transformers.get_scheduler``
    (its lambdas are ``functools.partial`` with ``num_training_steps``)."""
    scheduler = getattr(scheduler, "scheduler", scheduler)  # accelerate's wrapper
    lambdas = getattr(scheduler, "lr_lambdas", None)
    if not lambdas or not all(isinstance(f, partial) and "num_training_steps" in f.keywords for f in lambdas):
        return False
    scheduler.lr_lambdas = [
        partial(f.func, *f.args, **{**f.keywords, "num_training_steps": num_training_steps}) for f in lambdas
    ]
    return True


__all__ = ["TimeBudgetCallback"]
