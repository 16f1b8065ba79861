"""TimeBudgetCallback on a real Trainer run, against a simulated clock: each
training step costs 0.1 s and each evaluation 1 s."""

from __future__ import annotations

import pytest
from transformers import Trainer, TrainerCallback, TrainingArguments

from bert4rec_hf.training import TimeBudgetCallback, time_budget

from .helpers import MaskedRows, masked_batch, tiny_config, tiny_model

STEP_SECONDS, EVALUATION_SECONDS = 0.1, 1.0


class FakeClock(TrainerCallback):
    """Advances the budget's clock: a step when it ends, an evaluation when it ends.
    Registered before the budget, so the budget reads the clock after the tick."""

    def __init__(self, slow_after: int | None = None, evaluation_seconds: float = EVALUATION_SECONDS):
        self.now = 0.0
        self.slow_after = slow_after
        self.evaluation_seconds = evaluation_seconds

    def __call__(self) -> float:
        return self.now

    def on_step_end(self, args, state, control, **kwargs):
        slow = self.slow_after is not None and state.global_step > self.slow_after
        self.now += STEP_SECONDS * (10 if slow else 1)

    def on_evaluate(self, args, state, control, **kwargs):
        self.now += self.evaluation_seconds


def run(tmp_path, monkeypatch, budget, max_steps=1000, slow_after=None, scheduler="linear", evaluation_seconds=1.0):
    clock = FakeClock(slow_after, evaluation_seconds)
    monkeypatch.setattr(time_budget.time, "perf_counter", clock)
    callback = TimeBudgetCallback(budget, calibration_steps=5)
    rows = MaskedRows(masked_batch(tiny_config(), batch=16))
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=max_steps, per_device_train_batch_size=4, per_device_eval_batch_size=16,
        learning_rate=1e-3, lr_scheduler_type=scheduler, eval_strategy="steps", eval_steps=20, save_strategy="steps",
        save_steps=20, load_best_model_at_end=True, report_to=[], use_cpu=True, disable_tqdm=True, logging_steps=1000,
    )  # fmt: skip
    trainer = Trainer(model=tiny_model().train(), args=args, train_dataset=rows, eval_dataset=rows)
    trainer.add_callback(clock)
    trainer.add_callback(callback)
    trainer.train()
    evaluations = [entry["step"] for entry in trainer.state.log_history if "eval_loss" in entry]
    return trainer, callback, clock, evaluations


def test_stops_inside_the_budget_with_the_decay_fitted_to_it(tmp_path, monkeypatch):
    trainer, callback, clock, evaluations = run(tmp_path, monkeypatch, budget=10)
    steps = trainer.state.global_step
    # 0.1 s per step plus 1 s per 20 steps: 60 steps and 3 evaluations fill 9 of the 10 s, 61 would not fit
    assert 55 <= steps <= 60 and steps == callback.horizon == callback.stopped_at
    assert clock.now <= 10 and evaluations[-1] == steps  # the last step is evaluated (and checkpointed)
    assert callback.step_seconds == pytest.approx(STEP_SECONDS)
    assert trainer.lr_scheduler.get_last_lr()[0] == pytest.approx(0.0)  # the schedule ended at the last step


def test_a_slow_machine_stops_when_the_budget_is_spent(tmp_path, monkeypatch):
    trainer, callback, clock, _ = run(tmp_path, monkeypatch, budget=10, slow_after=30)
    # steps after 30 take 1 s each: the horizon fitted at step 20 is out of reach, the clock stops training
    assert trainer.state.global_step < 40 and 10 <= clock.now < 12
    assert callback.stopped_at == trainer.state.global_step


def test_stops_after_an_evaluation_when_no_further_step_and_evaluation_fit(tmp_path, monkeypatch):
    trainer, _, clock, evaluations = run(tmp_path, monkeypatch, budget=10, evaluation_seconds=5)
    # at step 20: 2 s of steps + 5 s of evaluation; one more step would need another 5 s evaluation
    assert trainer.state.global_step == 20 and evaluations == [20] and clock.now == pytest.approx(7.0)


def test_never_trains_past_max_steps(tmp_path, monkeypatch):
    trainer, callback, _, _ = run(tmp_path, monkeypatch, budget=1000, max_steps=45)
    assert trainer.state.global_step == 45 and callback.horizon == 45
    assert callback.stopped_at is None  # max_steps ended training, not the budget


def test_a_schedule_without_an_end_is_left_alone(tmp_path, monkeypatch):
    trainer, callback, clock, _ = run(tmp_path, monkeypatch, budget=10, scheduler="constant")
    assert 55 <= trainer.state.global_step <= 60 and clock.now <= 10
    assert trainer.lr_scheduler.get_last_lr()[0] == pytest.approx(1e-3)


def test_rejects_a_budget_that_is_not_positive():
    for seconds in (0, -5, float("nan")):
        with pytest.raises(ValueError, match="time_budget must be a positive number of seconds"):
            TimeBudgetCallback(seconds)
