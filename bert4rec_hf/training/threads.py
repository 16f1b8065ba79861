"""How many CPU threads a training run uses, chosen so that a busy machine does not stall it.

Measured on a 2-core machine (``benchmarks/cpu_contention.py``): torch's
default of one OpenMP thread per core trains fastest when the machine is idle,
but its threads spin while they wait for each other, so one other busy
process slows each step 3-4x; one thread is 15-40% slower idle and barely slowed
by a competitor. No fixed count is right on both, and a laptop's or a shared
server's load comes and goes during a long run. So by default
(``torch_threads: null``) the run measures: :class:`ThreadPolicyCallback` times
training steps, now and then runs a few steps with half or twice the threads,
and keeps whichever is faster. ``OMP_NUM_THREADS`` (or ``MKL_NUM_THREADS``) in
the environment, or ``--set torch_threads=N``, fixes the count instead.
"""

from __future__ import annotations

import logging
import os
import time

import torch
from transformers import TrainerCallback

logger = logging.getLogger(__name__)

THREAD_ENVIRONMENT = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def fixed_thread_count(torch_threads: int | None) -> int | None:
    """The thread count a user fixed: ``torch_threads`` when given, else the
    environment's; ``None`` when neither fixes it (the count then adapts)."""
    if torch_threads is not None:
        if isinstance(torch_threads, bool) or not isinstance(torch_threads, int) or torch_threads < 1:
            raise ValueError(f"torch_threads must be a positive integer or null (adapt), got {torch_threads!r}")
        return torch_threads
    for name in THREAD_ENVIRONMENT:
        value = os.environ.get(name, "").strip()
        if value:
            try:
                return max(int(value.split(",")[0]), 1)
            except ValueError:
                raise ValueError(f"{name}={value!r} is not a number of threads") from None
    return None


def apply_thread_policy(torch_threads: int | None) -> ThreadPolicyCallback | None:
    """Sets torch's thread count for a run: the fixed count when there is one
    (returns None), else returns the callback that adapts it during training."""
    fixed = fixed_thread_count(torch_threads)
    if fixed is not None:
        torch.set_num_threads(fixed)
        return None
    return ThreadPolicyCallback()


class ThreadPolicyCallback(TrainerCallback):
    """Keeps training at the fastest thread count while the machine's load changes.

    Every ``interval`` steps it runs ``probe_steps`` steps at a neighbouring
    count (half, or twice, the current one, between 1 and ``max_threads``) and
    compares their median duration with that of the last steps at the current
    count; it moves when the neighbour is faster by ``margin``. A probe that
    loses doubles the interval (up to ``max_interval``), so an idle machine
    pays for a probe rarely (about 1% of steps). A move, or steps that become
    ``1 + change`` times slower than at the last decision (a competitor came),
    bring the interval back to ``interval``. (A competitor that leaves shows
    only in a probe: one thread runs about as fast beside it as without it.)
    Steps that include an evaluation or a checkpoint are not timed.
    """

    def __init__(
        self,
        max_threads: int | None = None,
        interval: int = 10,
        max_interval: int = 400,
        probe_steps: int = 3,
        margin: float = 0.05,
        change: float = 0.5,
    ):
        self.max_threads = max_threads or os.cpu_count() or 1
        self.interval, self.base_interval, self.max_interval = interval, interval, max_interval
        self.probe_steps, self.margin, self.change = probe_steps, margin, change
        self.threads = self.max_threads
        self._probe_threads: int | None = None
        self._probe_down = True
        self._current: list[float] = []
        self._probe: list[float] = []
        self._since_probe = 0
        self._reference: float | None = None  # median step time at the last decision
        self._last: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        torch.set_num_threads(self.threads)
        self._last = None

    def on_evaluate(self, args, state, control, **kwargs):
        self._last = None  # the next interval holds an evaluation

    def on_save(self, args, state, control, **kwargs):
        self._last = None

    def on_step_end(self, args, state, control, **kwargs):
        self.after_step()

    def on_train_end(self, args, state, control, **kwargs):
        torch.set_num_threads(self.threads)

    def after_step(self) -> None:
        """Records the step that just ended and decides the next step's thread count."""
        now = time.perf_counter()
        last, self._last = self._last, now
        if last is None:
            return
        seconds = now - last
        if self._probe_threads is not None:
            self._probe.append(seconds)
            if len(self._probe) >= self.probe_steps:
                self._end_probe()
            return
        self._current = [*self._current[-(2 * self.probe_steps - 1) :], seconds]
        self._since_probe += 1
        if self._reference is not None and len(self._current) >= self.probe_steps:
            recent = _median(self._current[-self.probe_steps :])
            if recent > self._reference * (1 + self.change):
                self.interval, self._reference = self.base_interval, None
        if self._since_probe >= self.interval and len(self._current) >= self.probe_steps:
            self._start_probe()

    def _neighbours(self) -> list[int]:
        down, up = max(self.threads // 2, 1), min(self.threads * 2, self.max_threads)
        order = [down, up] if self._probe_down else [up, down]
        return [count for count in order if count != self.threads]

    def _start_probe(self) -> None:
        candidates = self._neighbours()
        if not candidates:
            self._since_probe = 0
            return
        self._probe_down = not self._probe_down
        self._probe_threads, self._probe = candidates[0], []
        torch.set_num_threads(self._probe_threads)
        self._last = None  # the first step after a switch pays for waking threads

    def _end_probe(self) -> None:
        probe, current = _median(self._probe), _median(self._current)
        if probe < current * (1 - self.margin):
            logger.info(
                f"torch threads {self.threads} -> {self._probe_threads}: "
                f"{current * 1000:.0f} -> {probe * 1000:.0f} ms per step"
            )
            self.threads, self._current, self.interval = self._probe_threads, self._probe, self.base_interval
        else:
            self.interval = min(self.interval * 2, self.max_interval)
        torch.set_num_threads(self.threads)
        self._reference = min(probe, current)
        self._probe_threads, self._probe, self._since_probe, self._last = None, [], 0, None


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


__all__ = ["ThreadPolicyCallback", "apply_thread_policy", "fixed_thread_count"]
