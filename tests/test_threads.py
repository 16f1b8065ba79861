import pytest
import torch

from bert4rec_hf.training import threads
from bert4rec_hf.training.config import ConfigError, load_config
from bert4rec_hf.training.threads import ThreadPolicyCallback, apply_thread_policy, fixed_thread_count


@pytest.fixture(autouse=True)
def keep_thread_count():
    count = torch.get_num_threads()
    yield
    torch.set_num_threads(count)


@pytest.fixture
def no_thread_environment(monkeypatch):
    for name in threads.THREAD_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


class SimulatedMachine:
    """A clock whose training steps take ``step_ms[threads]`` for the current torch thread count."""

    def __init__(self, monkeypatch, step_ms: dict[int, float]):
        self.now, self.step_ms = 0.0, step_ms
        monkeypatch.setattr(threads.time, "perf_counter", lambda: self.now)

    def train(self, policy: ThreadPolicyCallback, steps: int) -> list[int]:
        """Runs ``steps`` steps; returns the thread count each one ran with."""
        used = []
        for _ in range(steps):
            count = torch.get_num_threads()
            used.append(count)
            self.now += self.step_ms[count] / 1000
            policy.after_step()
        return used


def test_configured_count_wins_then_environment_then_adaptive(monkeypatch, no_thread_environment):
    assert fixed_thread_count(None) is None
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert fixed_thread_count(None) == 3
    assert fixed_thread_count(1) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="OMP_NUM_THREADS='many'"):
        fixed_thread_count(None)
    with pytest.raises(ValueError, match="torch_threads"):
        fixed_thread_count(0)


def test_a_fixed_count_is_set_and_nothing_adapts(no_thread_environment):
    assert apply_thread_policy(1) is None and torch.get_num_threads() == 1
    assert isinstance(apply_thread_policy(None), ThreadPolicyCallback)


def test_idle_machine_stays_at_all_threads_and_probes_rarely(monkeypatch):
    machine = SimulatedMachine(monkeypatch, {1: 90.0, 2: 60.0})
    policy = ThreadPolicyCallback(max_threads=2)
    policy.on_train_begin(None, None, None)
    used = machine.train(policy, 2_000)
    assert used[-1] == 2
    assert used.count(1) / len(used) < 0.02  # probes cost under 2% of the steps


def test_a_competitor_moves_training_to_fewer_threads_and_its_departure_moves_it_back(monkeypatch):
    machine = SimulatedMachine(monkeypatch, {1: 90.0, 2: 60.0})
    policy = ThreadPolicyCallback(max_threads=2)
    policy.on_train_begin(None, None, None)
    machine.train(policy, 1_000)
    machine.step_ms = {1: 95.0, 2: 260.0}  # another busy process arrives: spinning threads wait for each other
    busy = machine.train(policy, 600)
    assert busy.index(1) < 40 and busy[-1] == 1
    assert busy[100:].count(2) / len(busy[100:]) < 0.03  # only short probes at two threads
    machine.step_ms = {1: 90.0, 2: 60.0}  # it leaves
    idle = machine.train(policy, 900)
    assert idle[-1] == 2 and idle.index(2) <= 450


def test_run_configuration_names_a_bad_thread_count():
    assert load_config("ml-100k")["torch_threads"] is None
    assert load_config("ml-100k", config_dict={"torch_threads": 2})["torch_threads"] == 2
    with pytest.raises(ConfigError, match="torch_threads"):
        load_config("ml-100k", config_dict={"torch_threads": 0})
    with pytest.raises(ConfigError, match="torch_threads"):
        load_config("ml-100k", config_dict={"torch_threads": "auto"})
