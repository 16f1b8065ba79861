"""Knowledge distillation (issue 24): teachers' soft targets mixed into the CE loss, from the
loss formula and the teachers' probabilities to a run that trains its own teachers."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.nn import functional as F

from bert4rec_hf import Bert4RecConfig, ItemTokenizer, run_bert4rec, tune_bert4rec
from bert4rec_hf.training.config import ConfigError, load_config, read_yaml
from bert4rec_hf.training.distillation import TeacherEnsemble
from bert4rec_hf.training.planning import MEASURED_STEPS

from .helpers import PHASED_RUN, masked_batch, tiny_model, write_ml100k_slice

VOCAB = 203  # 201 real items


def _dense_scores(model, batch, temperature=1.0):
    """Every real item's score at the labelled positions, written out from the full score matrix."""
    inputs, attention_mask, labels = batch
    hidden = model.bert4rec(inputs, attention_mask=attention_mask).last_hidden_state
    predicted = labels.ne(-100)
    return model.item_scorer(hidden[predicted], inputs[predicted.nonzero()[:, 0]]).range().float() / temperature


def _soft_targets(batch, seed):
    rows = int(batch[2].ne(-100).sum())
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(rows, VOCAB - 2, generator=generator).mul(3).softmax(1)


def test_expected_score_is_the_probability_weighted_sum_of_every_score():
    model = tiny_model(seed=2, vocab_size=VOCAB)
    with torch.no_grad():
        model.head.seen_item_bias.fill_(2.0)  # the offset's share counts on the seen items only
    batch = masked_batch(model.config, batch=5, seed=1)
    inputs, attention_mask, labels = batch
    hidden = model.bert4rec(inputs, attention_mask=attention_mask).last_hidden_state
    predicted = labels.ne(-100)
    scorer = model.item_scorer(hidden[predicted], inputs[predicted.nonzero()[:, 0]], exact=False)
    probabilities = _soft_targets(batch, seed=0)
    dense = (scorer.range().float() * probabilities).sum(1)
    torch.testing.assert_close(scorer.expected(probabilities).float(), dense, rtol=1e-5, atol=1e-5)
    uniform = torch.full_like(probabilities, 1 / probabilities.shape[1])
    torch.testing.assert_close(scorer.expected(uniform), scorer.mean(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("chunk_size", [0, 16])
@pytest.mark.parametrize("temperature", [1.0, 0.25])
def test_distillation_is_the_cross_entropy_against_the_mixed_target(chunk_size, temperature):
    weight = 0.6
    model = tiny_model(
        seed=4, vocab_size=VOCAB, distillation_weight=weight, item_chunk_size=chunk_size,
        softmax_temperature=temperature,
    ).train()
    with torch.no_grad():
        model.head.seen_item_bias.fill_(1.5)
    batch = masked_batch(model.config, batch=7, seed=3)
    inputs, attention_mask, labels = batch
    probabilities = _soft_targets(batch, seed=5)
    loss = model(inputs, attention_mask=attention_mask, labels=labels, teacher_probabilities=probabilities).loss
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    model.zero_grad()
    targets = F.one_hot(labels[labels.ne(-100)] - 2, VOCAB - 2).float()
    mixed = (1 - weight) * targets + weight * probabilities
    log_p = _dense_scores(model, batch, temperature).log_softmax(1)
    reference = -(mixed * log_p).sum(1).mean()
    reference.backward()
    torch.testing.assert_close(loss, reference.detach(), rtol=1e-5, atol=1e-6)
    for name, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-6, msg=name)

    model.eval()  # evaluation losses stay the plain cross-entropy
    with torch.no_grad():
        plain = model(inputs, attention_mask=attention_mask, labels=labels).loss
        logits = model(inputs, attention_mask=attention_mask).logits
    torch.testing.assert_close(plain, F.cross_entropy(logits.float() / temperature, labels[labels.ne(-100)]))


def test_soft_targets_need_a_weight_and_the_ce_loss():
    batch = masked_batch(tiny_model(vocab_size=VOCAB).config, batch=4, seed=1)
    inputs, attention_mask, labels = batch
    model = tiny_model(vocab_size=VOCAB).train()
    with pytest.raises(ValueError, match="distillation_weight above 0"):
        model(inputs, attention_mask=attention_mask, labels=labels, teacher_probabilities=_soft_targets(batch, 0))
    with pytest.raises(ValueError, match="distillation_weight must be in"):
        Bert4RecConfig(distillation_weight=1.5)
    with pytest.raises(ValueError, match="applies to loss_type 'CE' only"):
        Bert4RecConfig(distillation_weight=0.5, loss_type="BPR")


def test_teacher_probabilities_are_the_softmax_of_the_mean_score():
    teachers = [tiny_model(seed=seed, vocab_size=VOCAB, softmax_temperature=t) for seed, t in ((1, 1.0), (2, 0.5))]
    with torch.no_grad():
        teachers[0].head.seen_item_bias.fill_(1.0)
    ensemble = TeacherEnsemble(teachers)
    for seed in (7, 8):  # the second batch with the item vectors the first one made
        batch = masked_batch(teachers[0].config, batch=6, seed=seed)
        inputs, attention_mask, labels = batch
        probabilities = ensemble.probabilities(inputs, attention_mask, labels.ne(-100))
        mean = (_dense_scores(teachers[0], batch, 1.0) + _dense_scores(teachers[1], batch, 0.5)) / 2
        torch.testing.assert_close(probabilities, mean.softmax(1), rtol=1e-5, atol=1e-7)
    assert all(not p.requires_grad for teacher in teachers for p in teacher.parameters())


def test_teachers_of_another_vocabulary_are_refused(tmp_path):
    tokenizer = ItemTokenizer.fit([f"item{i}" for i in range(VOCAB - 2)])
    teacher = tiny_model(vocab_size=VOCAB)
    teacher.save_pretrained(tmp_path / "teacher")
    tokenizer.save_pretrained(tmp_path / "teacher")
    assert len(TeacherEnsemble.from_folders([tmp_path / "teacher"], tokenizer).models) == 1
    other = ItemTokenizer.fit([f"other{i}" for i in range(VOCAB - 2)])
    with pytest.raises(ValueError, match="another item vocabulary"):
        TeacherEnsemble.from_folders([tmp_path / "teacher"], other)
    with pytest.raises(FileNotFoundError, match="not a saved model folder"):
        TeacherEnsemble.from_folders([tmp_path], tokenizer)
    with pytest.raises(ValueError, match="share one item vocabulary"):
        TeacherEnsemble([teacher, tiny_model(vocab_size=VOCAB + 1)])


def _same_weights(first: Path, second: Path) -> bool:
    one, other = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    return one.keys() == other.keys() and all(torch.equal(one[name], other[name]) for name in one)


SETTINGS = {**PHASED_RUN, "eval_steps": 12}  # one evaluation: the model saved is the last step's


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    return write_ml100k_slice(tmp_path_factory.mktemp("log") / "slice.csv", 60)


def test_a_run_trains_its_teachers_then_learns_from_them(log, tmp_path, monkeypatch):
    """``distill_teachers: 1``: the run on seed 4 first, as a plain run in teachers/teacher-1;
    then the run itself, whose loss reads that teacher from the switch (step 6) on. Naming the
    same folder with ``distill_from`` trains the same model; without the teacher it differs."""
    settings = {**SETTINGS, "data_path": str(log)}
    probabilities_at = []
    original = TeacherEnsemble.probabilities

    def recording(self, *args):
        probabilities_at.append(len(probabilities_at))
        return original(self, *args)

    monkeypatch.setattr(TeacherEnsemble, "probabilities", recording)
    run_bert4rec(config_dict={**settings, "distill_teachers": 1, "distillation_weight": 0.5}, output_dir=tmp_path / "run")
    teacher = tmp_path / "run" / "teachers" / "teacher-1"
    teacher_config = read_yaml(teacher / "run_config.yaml")
    assert (teacher_config["seed"], teacher_config["distill_teachers"], teacher_config["distillation_weight"]) == (4, 0, 0.0)
    # the next-item steps 7-12 only, after the plan's timed next-item steps (the untimed one too): the time
    # it says includes the teachers' scoring; the teacher's own run read none
    assert len(probabilities_at) == MEASURED_STEPS + 1 + 6
    plan = json.loads((tmp_path / "run" / "data_report.json").read_text())["plan"]["summary"]
    assert "on next-item rows, distilled from 1 teacher," in plan
    alone = run_bert4rec(config_dict={**settings, "seed": 4}, output_dir=tmp_path / "alone")
    assert _same_weights(teacher, Path(alone["output_dir"]))

    named = run_bert4rec(
        config_dict={**settings, "distill_from": [str(teacher)], "distillation_weight": 0.5}, output_dir=tmp_path / "named"
    )
    plain = run_bert4rec(config_dict=settings, output_dir=tmp_path / "plain")
    assert _same_weights(tmp_path / "run", Path(named["output_dir"]))
    assert not _same_weights(tmp_path / "run", Path(plain["output_dir"]))
    ranks = [json.loads((folder / "metrics.json").read_text())["test"]["test_mrr"] for folder in (tmp_path / "run", tmp_path / "plain")]
    assert ranks[0] != ranks[1]

    distilled = {**settings, "distill_teachers": 1, "distillation_weight": 0.5}
    with pytest.raises(FileExistsError, match=r"already holds config\.json, model\.safetensors"):
        run_bert4rec(config_dict=distilled, output_dir=tmp_path / "run", resume=True)  # finished: not trained again
    for name in ("model.safetensors", "metrics.json", "config.json", "item_vocab.json", "README.md", "run_config.yaml", "training_curves.png"):
        (tmp_path / "run" / name).unlink(missing_ok=True)  # as if killed before its end: only the teachers are left
    with pytest.raises(FileExistsError, match="teachers of an earlier run; pass resume=True"):
        run_bert4rec(config_dict=distilled, output_dir=tmp_path / "run")
    # a setting changed before --resume: the finished teacher was trained without it, so it is not kept
    with pytest.raises(ConfigError, match=r"finished teacher .*teacher-1: .*\(learning_rate: 0\.001 -> 0\.002\)"):
        run_bert4rec(config_dict={**distilled, "learning_rate": 0.002}, output_dir=tmp_path / "run", resume=True)
    assert _same_weights(teacher, Path(alone["output_dir"]))  # refused before anything was written

    class Started(Exception):  # a run got as far as reading its data: stopped there
        pass

    def started(config):
        raise Started(config["seed"])

    monkeypatch.setattr("bert4rec_hf.training.pipeline.prepare_data", started)
    with pytest.raises(Started) as first:  # the same settings: the teacher (seed 4) is kept, the run itself starts
        run_bert4rec(config_dict=distilled, output_dir=tmp_path / "run", resume=True)
    assert first.value.args == (3,)


def test_teacher_overrides_train_the_teachers_with_their_own_settings(log, tmp_path, caplog):
    """A student trained longer than its teachers: ``teacher_overrides`` gives the teachers their
    own length; the run's other settings stay theirs, and a resume keeps them only unchanged."""
    settings = {**SETTINGS, "data_path": str(log), "distill_teachers": 1, "distillation_weight": 0.5}
    overrides = {"max_steps": 8, "next_item_share": 0.25}
    with caplog.at_level("INFO", logger="bert4rec_hf.training.distillation"):
        run_bert4rec(config_dict={**settings, "teacher_overrides": overrides}, output_dir=tmp_path / "run")
    assert "teacher 1 of 1: seed 4, teacher_overrides {'max_steps': 8, 'next_item_share': 0.25}" in caplog.text
    teacher = tmp_path / "run" / "teachers" / "teacher-1"
    saved = read_yaml(teacher / "run_config.yaml")
    assert (saved["seed"], saved["max_steps"], saved["next_item_share"], saved["teacher_overrides"]) == (4, 8, 0.25, {})
    assert json.loads((teacher / "metrics.json").read_text())["global_steps"] == 8
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["global_steps"] == 12
    alone = run_bert4rec(config_dict={**SETTINGS, "data_path": str(log), "seed": 4, **overrides}, output_dir=tmp_path / "alone")
    assert _same_weights(teacher, Path(alone["output_dir"]))

    (tmp_path / "run" / "metrics.json").unlink()  # as if killed after its teacher: --resume checks the teacher
    with pytest.raises(ConfigError, match=r"finished teacher .*teacher-1: .*\(max_steps: 8 -> 10\)"):
        run_bert4rec(
            config_dict={**settings, "teacher_overrides": {**overrides, "max_steps": 10}}, output_dir=tmp_path / "run", resume=True
        )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"seed": 7}, r"'seed' is the run's: its teachers train on seeds seed \+ 1"),
        ({"distillation_weight": 0.5}, "'distillation_weight' is set by the run for its teachers"),
        ({"average_weights_share": 0.5}, "'average_weights_share' is set by the run for its teachers"),
        ({"distill_from": ["x"]}, "'distill_from' is set by the run for its teachers"),
        ({"data_path": "other.csv"}, r"teachers would train with dataset: 'other' where the run has 'slice'; data_path: "
                                     r"'other.csv' where the run has '.*slice.csv'\. They must learn the run's data and items"),
        ({"min_item_interactions": 1, "max_steps": 8}, "teachers would train with min_item_interactions: 1 where the run has"),
    ],
)
def test_teacher_overrides_refuse_what_the_run_decides_and_the_data(log, tmp_path, overrides, message):
    settings = {**SETTINGS, "data_path": str(log), "distill_teachers": 1, "distillation_weight": 0.5}
    with pytest.raises(ConfigError, match=message):
        run_bert4rec(config_dict={**settings, "teacher_overrides": overrides}, output_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_teacher_overrides_may_repeat_a_data_setting_the_run_has(log, tmp_path, monkeypatch):
    """What is refused is data the teachers would learn and the run not: a data key equal to the run's passes."""

    class Started(Exception):
        pass

    def started(config):
        raise Started(config["seed"], config["max_steps"])

    monkeypatch.setattr("bert4rec_hf.training.pipeline.prepare_data", started)
    settings = {**SETTINGS, "data_path": str(log), "distill_teachers": 1, "distillation_weight": 0.5}
    with pytest.raises(Started) as first:  # the first teacher starts, with its own length
        run_bert4rec(config_dict={**settings, "teacher_overrides": {"data_path": str(log), "max_steps": 8}}, output_dir=tmp_path / "run")
    assert first.value.args == (4, 8)


def test_teacher_overrides_are_checked_as_settings_and_need_teachers_to_train(log, tmp_path):
    with pytest.raises(ConfigError, match=r"'teacher_overrides': unknown configuration key 'max_step' \(did you mean 'max_steps'\?\)"):
        load_config(config_dict={"teacher_overrides": {"max_step": 8000}})
    with pytest.raises(ConfigError, match=r"'teacher_overrides': 'max_steps' must be int, got 'long'"):
        load_config(config_dict={"teacher_overrides": {"max_steps": "long"}})
    with pytest.raises(ConfigError, match=r"'teacher_overrides' must be dict, got \[8000\]"):
        load_config(config_dict={"teacher_overrides": [8000]})
    teacher = tmp_path / "teacher"
    with pytest.raises(ConfigError, match=r"teacher_overrides: \{'max_steps': 8\} sets how the run trains its own teachers"):
        run_bert4rec(
            config_dict={**SETTINGS, "data_path": str(log), "distill_from": [str(teacher)], "distillation_weight": 0.5,
                         "teacher_overrides": {"max_steps": 8}},
            output_dir=tmp_path / "run",
        )  # fmt: skip


def test_teachers_and_their_weight_come_together(log, tmp_path):
    settings = {**SETTINGS, "data_path": str(log)}
    with pytest.raises(ConfigError, match="name the teachers"):
        run_bert4rec(config_dict={**settings, "distillation_weight": 0.5}, output_dir=tmp_path / "a")
    with pytest.raises(ConfigError, match="distillation_weight is 0, so the loss would never read them"):
        run_bert4rec(config_dict={**settings, "distill_teachers": 2}, output_dir=tmp_path / "b")
    with pytest.raises(ConfigError, match="not both"):
        run_bert4rec(
            config_dict={**settings, "distill_teachers": 2, "distill_from": ["x"], "distillation_weight": 0.5},
            output_dir=tmp_path / "c",
        )
    with pytest.raises(ConfigError, match="'distill_from' must be a non-empty list of model folders"):
        load_config(config_dict={"distill_from": []})
    with pytest.raises(ConfigError, match="'distill_teachers' must be a number of teacher runs"):
        load_config(config_dict={"distill_teachers": -1})
    with pytest.raises(FileNotFoundError, match="is not a saved model folder"):
        run_bert4rec(
            config_dict={**settings, "distill_from": [str(tmp_path)], "distillation_weight": 0.5}, output_dir=tmp_path / "d"
        )
    hyper = tmp_path / "hyper.test"
    hyper.write_text("learning_rate choice [0.01,0.001]\n")
    with pytest.raises(ConfigError, match="tuning trains each trial without teachers"):
        tune_bert4rec(hyper, config_dict={**settings, "distill_teachers": 2, "distillation_weight": 0.5}, output_dir=tmp_path / "e")
    with pytest.raises(ConfigError, match="tuning trains each trial without teachers"):
        tune_bert4rec(hyper, config_dict={**settings, "teacher_overrides": {"max_steps": 8}}, output_dir=tmp_path / "f")
