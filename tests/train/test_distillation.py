"""Knowledge distillation (ADAPT-9, distill.*): the KD term against NumPy and its zero-temperature limit, and a
distilled run end to end: the teacher's logits reach the gradient, the run records its teacher and resumes exactly,
every layout equals one device, and a teacher of another vocabulary is refused before anything compiles."""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest

from research.config import ConfigError, DistillConfig, ParallelConfig
from research.model.flops import forward_flops_per_token, train_flops_per_token
from research.train import run
from research.train.losses import distillation_loss, token_losses

from .helpers import assert_trees_bitwise_equal, final_params, tiny_run

PAD = 3


def _logits(seed: int, scale: float = 3.0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((2, 5, 11)) * scale).astype(np.float32)  # [batch, T, vocab]


def _numpy_kd(student, teacher, targets, temperature, temper_student):
    def log_softmax(x):
        x = x.astype(np.float64)
        x = x - x.max(-1, keepdims=True)
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    log_q = log_softmax(teacher / temperature)
    log_p = log_softmax(student / temperature if temper_student else student)
    kl = (np.exp(log_q) * (log_q - log_p)).sum(-1)
    return (temperature**2 if temper_student else 1.0) * kl[targets != PAD].sum()


@pytest.mark.parametrize("temperature,temper_student", [(1.0, False), (2.0, False), (0.5, True), (4.0, True)])
def test_the_kd_term_matches_numpy(temperature, temper_student):
    student, teacher = _logits(0), _logits(1)
    targets = np.random.default_rng(2).integers(0, 11, (2, 5))
    targets[1, 3:] = PAD  # padded targets count for nothing
    cfg = DistillConfig(teacher="t", temperature=temperature, temper_student=temper_student)
    ours = distillation_loss(student, teacher, targets, PAD, cfg)
    np.testing.assert_allclose(ours, _numpy_kd(student, teacher, targets, temperature, temper_student), rtol=1e-5)


def test_at_zero_temperature_the_kd_term_is_the_label_loss_on_the_teachers_argmax():
    student, teacher = _logits(3), _logits(4)
    targets = np.zeros((2, 5), np.int64)
    kd = distillation_loss(student, teacher, targets, PAD, DistillConfig(teacher="t", temperature=1e-4))
    _, label_loss, _ = token_losses(student, teacher.argmax(-1), PAD, 0.0)
    np.testing.assert_allclose(kd, label_loss, rtol=1e-5)


@pytest.fixture(scope="module")
def teacher(small_corpus, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("teacher")
    run(tiny_run(small_corpus, steps=8, eval_every=8), workdir, progress=False)
    return workdir


def _student(small_corpus, teacher, *overrides, **train):
    base = tiny_run(small_corpus, steps=6, eval_every=6, log_every=1, **train).override("model.dropout=0")
    return base.override(f"distill.teacher={teacher}", *overrides)


def _records(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_a_student_that_is_its_teacher_gets_no_gradient_from_it(small_corpus, teacher, tmp_path):
    """init.from_run=teacher, distill.weight=1: student and teacher logits agree, the KL is 0 and so is its gradient
    (a run with the label loss mixed in has one of order 1: the next test). The summary records the teacher and its
    FLOPs."""
    config = _student(small_corpus, teacher, f"init.from_run={teacher}", "distill.weight=1")
    summary = run(config, tmp_path / "same", progress=False)
    assert _records(tmp_path / "same")[0]["grad_norm"] < 1e-7  # zero, to float32 rounding of softmax(x) - softmax(x)
    assert summary.teacher["run"] == str(teacher.absolute()) and summary.teacher["step"] == 8
    model, seq_len = config.model, config.data.seq_len
    assert summary.flops_per_token == train_flops_per_token(model, seq_len) + forward_flops_per_token(model, seq_len)


def test_a_distilled_run_resumes_exactly_and_serves_without_its_teacher(small_corpus, teacher, tmp_path):
    copy = tmp_path / "teacher"
    shutil.copytree(teacher, copy)
    config = _student(small_corpus, copy, "distill.temperature=2", "distill.weight=0.7")
    whole = run(config, tmp_path / "whole", progress=False)
    assert _records(tmp_path / "whole")[0]["grad_norm"] > 0.1
    run(config, tmp_path / "split", progress=False, stop_after_steps=3)
    resumed = run(config, tmp_path / "split", progress=False)
    assert resumed.final_train_loss == whole.final_train_loss and resumed.teacher == whole.teacher
    shutil.rmtree(copy)  # generation, scoring and export read the student alone
    assert_trees_bitwise_equal(final_params(tmp_path / "split"), final_params(tmp_path / "whole"))


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices (make test sets them)")
def test_distillation_under_tensor_and_fsdp_layout_equals_one_device(small_corpus, teacher, tmp_path):
    """The teacher's parameters are laid out like the student's (same logical-axis rules) on the 8-device mesh."""
    config = _student(small_corpus, teacher, "distill.temperature=2")
    one = run(config, tmp_path / "one", devices=jax.devices()[:1], progress=False)
    sharded = config.override(*(f"parallel.{k}={v}" for k, v in
                                (("data", 1), ("fsdp", 4), ("tensor", 2))))
    assert sharded.parallel == ParallelConfig(data=1, fsdp=4, tensor=2)
    eight = run(sharded, tmp_path / "eight", devices=jax.devices()[:8], progress=False)
    np.testing.assert_allclose([r["loss"] for r in _records(tmp_path / "eight")],
                               [r["loss"] for r in _records(tmp_path / "one")], rtol=1e-5)
    assert eight.teacher == one.teacher
    for a, b in zip(jax.tree.leaves(final_params(tmp_path / "eight")), jax.tree.leaves(final_params(tmp_path / "one"))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_teacher_of_another_vocabulary_or_no_teacher_is_refused(small_corpus, teacher, tmp_path):
    wider = _student(small_corpus, teacher, "model.vocab_size=300")
    with pytest.raises(ConfigError, match=r"distill.teacher=.*vocabulary has 259 entries, this run's 300"):
        run(wider, tmp_path / "wider", progress=False)
    with pytest.raises(ConfigError, match=r"distill.teacher=.*no config.json there"):
        run(_student(small_corpus, tmp_path / "nowhere"), tmp_path / "orphan", progress=False)
    with pytest.raises(ConfigError, match=r"distill.weight=1.5: must be in \[0, 1\]"):
        DistillConfig(teacher="t", weight=1.5)


def test_sequence_level_distillation_trains_on_the_teachers_greedy_replies(small_corpus, teacher, tmp_path):
    """`research.generate --chat` replaces each conversation's last assistant turn with the teacher's greedy reply
    (the same text as decoding each prompt alone), and a student trains on the result as chat data."""
    from research.data.chat import ChatTemplate
    from research.generate import main as generate_main
    from research.infer import generate, load_run

    rng = np.random.default_rng(0)
    asks = ["".join(rng.choice(list("abcde"), 2)) for _ in range(12)]
    lines = [{"messages": [{"role": "user", "content": a}, {"role": "assistant", "content": "x"}]} for a in asks]
    lines[0] = {"prompt": asks[0], "response": "old"}
    lines[1] = {"messages": [{"role": "user", "content": asks[1]}]}  # nothing to replace: a reply is added
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert generate_main(["--workdir", str(teacher), "--chat", str(tmp_path / "in.jsonl"), "--out",
                          str(tmp_path / "teacher.jsonl"), "--temperature", "0", "--max-new-tokens", "5"]) == 0
    replied = [json.loads(line)["messages"] for line in (tmp_path / "teacher.jsonl").read_text().splitlines()]
    model, tokenizer, _ = load_run(teacher)
    for ask, conversation in zip(asks, replied):
        assert conversation[0] == {"role": "user", "content": ask} and len(conversation) == 2
        prompt = tokenizer.encode(ChatTemplate().prompt(conversation[:1]))
        alone = generate(model, [prompt], 5, stop_ids=(tokenizer.eos_id,), pad_id=tokenizer.pad_id)
        assert conversation[1] == {"role": "assistant", "content": tokenizer.decode(alone.tokens[0])}

    student = tiny_run(small_corpus, steps=4, eval_every=4, eval_batches=1).override(
        f"data.source={tmp_path / 'teacher.jsonl'}", "data.format=chat", "data.document_mask=true",
        "data.val_fraction=0.2")
    assert run(student, tmp_path / "student", progress=False).status == "complete"
