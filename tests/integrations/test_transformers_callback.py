"""transformers' DeepscopeCallback with a real `transformers.Trainer`, read back by tensorboard.

A tiny `BertForSequenceClassification` built from its config (nothing
downloaded) trains 2 epochs on 64 random token sequences (labels from the
tokens), 8 a batch, with `gradient_accumulation_steps=2`: 8 optimizer steps.
The Trainer's own TensorBoard scalars are on (`report_to=["tensorboard"]`). A
second callback records the reference at the Trainer's `on_pre_optimizer_step`
(each parameter's gradient norm and weights, float64) and `on_optimizer_step`
(‖ΔW‖/‖W‖). The tests check that deepscope wrote into the directory of the
Trainer's own scalars, logged update ratios and gradient norms at optimizer
steps 0, every, 2·every, ... with the reference's values, measured the
model's `.logits`, removed its hooks, and that tensorboard (both loaders)
lists the kinds a default watch() logs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers", reason="pip install -e .[transformers]")
pytest.importorskip("accelerate", reason="the transformers Trainer needs accelerate")

import deepscope  # noqa: E402
from deepscope.integrations.transformers import DeepscopeCallback  # noqa: E402
from tests.hf_models import tiny_bert_classifier  # noqa: E402
from tests.integrations.served import (  # noqa: E402
    DEFAULT_KINDS,
    kinds_of,
    reference_table,
    served_series,
)
from tests.logged_numbers import event_files, read_logged  # noqa: E402
from tests.route_helpers import LOADERS  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

EVERY = 2
OPTIONS = {"every": EVERY, "spectra_every": 4, "layer_statistics_every": 4}
SAMPLES, BATCH, ACCUMULATE, EPOCHS, LENGTH, VOCAB = 64, 8, 2, 2, 12, 30
STEPS = EPOCHS * SAMPLES // (BATCH * ACCUMULATE)
EPS32 = float(np.finfo(np.float32).eps)
# deepscope's norms are float32 sums (pairwise over up to 2,048 elements: 11
# roundings deep) stored as float32 (half an ulp), against the reference's float64.
RTOL = 16 * EPS32


class Tokens(torch.utils.data.Dataset):
    """Random token ids; the label says whether token 1 occurs more often than token 2."""

    def __init__(self):
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(3, VOCAB, (SAMPLES, LENGTH), generator=generator)
        self.ids[:, 1:4] = torch.randint(1, 3, (SAMPLES, 3), generator=generator)
        self.labels = ((self.ids == 1).sum(1) > (self.ids == 2).sum(1)).long()

    def __len__(self) -> int:
        return SAMPLES

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {
            "input_ids": self.ids[i],
            "attention_mask": torch.ones(LENGTH, dtype=torch.long),
            "labels": self.labels[i],
        }


class Reference(transformers.TrainerCallback):
    """Gradient norms and update ratios of every optimizer step, in float64."""

    def __init__(self):
        self.grad_norms: dict[int, dict[str, float]] = {}
        self.ratios: dict[int, dict[str, float]] = {}
        self._before: dict[str, torch.Tensor] = {}

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.grad_norms[state.global_step] = {
            n: float(torch.linalg.vector_norm(p.grad.double()))
            for n, p in params.items()
            if p.grad is not None
        }
        self._before = {n: p.detach().double().clone() for n, p in params.items()}

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        ratios = {}
        for n, p in model.named_parameters():
            if n not in self._before:
                continue
            before = torch.linalg.vector_norm(self._before[n])
            delta = torch.linalg.vector_norm(p.detach().double() - self._before[n])
            # A zero weight before the step (BERT's zero-initialised biases): no ratio (null).
            ratios[n] = float(delta / before) if before > 0 else float("nan")
        self.ratios[state.global_step] = ratios


def _trainer(output_dir: Path, callbacks, report_to=("tensorboard",), **options):
    args = transformers.TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=BATCH,
        gradient_accumulation_steps=ACCUMULATE,
        num_train_epochs=EPOCHS,
        learning_rate=1e-3,
        logging_steps=1,
        report_to=list(report_to),
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        **options,
    )
    return transformers.Trainer(
        model=tiny_bert_classifier(labels=2, positions=LENGTH),
        args=args,
        train_dataset=Tokens(),
        callbacks=list(callbacks),
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(output dir, trainer, deepscope's callback, the reference) after train()."""
    output_dir = tmp_path_factory.mktemp("hf")
    callback, reference = DeepscopeCallback(**OPTIONS), Reference()
    trainer = _trainer(output_dir, [callback, reference])
    trainer.train()
    return output_dir, trainer, callback, reference


def _tensorboard_callback(trainer):
    from transformers.integrations import TensorBoardCallback

    return next(c for c in trainer.callback_handler.callbacks if isinstance(c, TensorBoardCallback))


def test_steps_are_the_trainers_optimizer_steps(trained):
    _, trainer, callback, reference = trained
    assert trainer.state.global_step == STEPS
    assert callback.monitor.step == STEPS
    assert callback.monitor.stats.steps_seen == STEPS
    assert callback.monitor.stats.error_count == 0, callback.monitor.stats.errors
    assert sorted(reference.grad_norms) == list(range(STEPS))


def test_writes_next_to_the_trainers_own_scalars(trained):
    _, trainer, callback, _ = trained
    log_dir = Path(_tensorboard_callback(trainer).logging_dir)
    assert Path(callback.log_dir) == log_dir
    files = event_files(log_dir)
    assert len(files) == 2 and all(f.parent == log_dir for f in files), files
    logged = read_logged(log_dir)
    tags = {tag for tag, _ in logged}
    assert {"update_ratios", "layer_statistics/parameters", "layer_statistics/activations"} <= tags
    assert any(tag.startswith("spectra/") for tag in tags), tags


def test_hooks_are_removed_after_train(trained):
    _, trainer, _, _ = trained
    optimizer = trainer.optimizer.optimizer  # accelerate's wrapper's torch optimizer
    assert not optimizer._optimizer_step_pre_hooks
    assert not optimizer._optimizer_step_post_hooks
    writer = deepscope.SummaryWriter(str(Path(trainer.args.output_dir) / "again"))
    deepscope.watch(trainer.model, optimizer, writer, every=1).close()
    writer.close()


@pytest.mark.parametrize("load_fast", LOADERS)
def test_tensorboard_serves_the_reference(trained, tensorboard_server, load_fast):
    output_dir, trainer, callback, reference = trained
    root = Path(output_dir) / "runs"
    base = tensorboard_server(root, load_fast)
    run = Path(callback.log_dir).relative_to(root).as_posix()
    served = served_series(base, run, list(range(0, STEPS, EVERY)))
    assert kinds_of(served.tags) == DEFAULT_KINDS
    # In the optimizer's order (the Trainer groups parameters with and without weight decay).
    names = served.ratio_names
    assert sorted(names) == sorted(
        n for n, p in trainer.model.named_parameters() if p.requires_grad
    )
    want = reference_table(reference.ratios, served.ratio_steps, names)
    np.testing.assert_allclose(served.ratios, want, rtol=RTOL)
    got = served.grad_norms[:, [served.norm_names.index(n) for n in names]]
    want = reference_table(reference.grad_norms, served.norm_steps, names)
    np.testing.assert_allclose(got, want, rtol=RTOL)


@pytest.mark.parametrize("where", ["given", "environment", "no tensorboard"])
def test_log_dir_rule(tmp_path, monkeypatch, where):
    given = tmp_path / "given"
    if where == "environment":
        monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "from-env"))
    else:
        monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    callback = DeepscopeCallback(log_dir=given if where == "given" else None, **OPTIONS)
    trainer = _trainer(
        tmp_path / "out",
        [callback],
        report_to=() if where == "no tensorboard" else ("tensorboard",),
        max_steps=1,
    )
    trainer.train()
    log_dir = Path(callback.log_dir)
    if where == "given":
        assert log_dir == given
    elif where == "environment":
        assert log_dir == tmp_path / "from-env" == Path(_tensorboard_callback(trainer).logging_dir)
    else:
        assert log_dir.parent == tmp_path / "out" / "runs"
    assert ("layer_statistics/parameters", 0) in read_logged(log_dir)


class Predictions(transformers.TrainerCallback):
    """The reference confusion counts: argmax of the model's `.logits` after chosen steps."""

    def __init__(self, batch: dict, steps: set[int]):
        self.batch, self.steps, self.counts = batch, steps, {}

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        if state.global_step not in self.steps:
            return
        from sklearn.metrics import confusion_matrix

        was_training = model.training
        model.eval()
        with torch.no_grad():
            inputs = {k: v for k, v in self.batch.items() if k != "labels"}
            predicted = model(**inputs).logits.argmax(dim=1)
        model.train(was_training)
        self.counts[state.global_step] = confusion_matrix(
            self.batch["labels"].numpy(), predicted.numpy(), labels=[0, 1]
        )


def test_the_models_logits_are_the_scores(tmp_path):
    """watch()'s measurers read a ModelOutput's `.logits` (here: the confusion matrices)."""
    data = Tokens()
    batch = {k: torch.stack([data[i][k] for i in range(32)]) for k in data[0]}
    callback = DeepscopeCallback(
        measure=[
            deepscope.UpdateRatios(every=4),
            deepscope.ConfusionMatrices(data=[batch], every=4, num_classes=2),
        ]
    )
    reference = Predictions(batch, {0, 4})
    trainer = _trainer(tmp_path / "out", [callback, reference], report_to=(), max_steps=5)
    trainer.train()
    assert callback.monitor.stats.error_count == 0, callback.monitor.stats.errors
    logged = read_logged(Path(callback.log_dir))
    steps = sorted(step for tag, step in logged if tag == "confusion")
    assert steps == [0, 4]
    for step in steps:
        counts = next(v for k, v in logged[("confusion", step)].items() if "counts" in k)
        np.testing.assert_array_equal(np.asarray(counts).reshape(2, 2), reference.counts[step])


def test_options_the_trainer_sets_are_refused():
    with pytest.raises(TypeError, match="come from the transformers trainer"):
        DeepscopeCallback(writer=None)


def test_ddp_rank_zero_writes(tmp_path):
    """The Trainer on 2 gloo processes (its own DDP, set up from the environment as
    torchrun would): rank 0 alone writes, and the activation statistics count both
    ranks' batches."""
    import torch.multiprocessing as mp

    from tests.distributed.ranks import free_port
    from tests.integrations.hf_ranks import train_rank

    mp.start_processes(
        train_rank, args=(2, free_port(), str(tmp_path)), nprocs=2, start_method="spawn"
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for seen in ranks:
        assert seen["world"] == 2 and seen["errors"] == []
        assert seen["global_step"] == STEPS // 2  # each rank half the samples
    assert ranks[1]["log_dir"] is None  # only the main process writes
    log_dir = Path(ranks[0]["log_dir"])
    deepscope_files = [f for f in event_files(tmp_path) if read_logged(f.parent)]
    assert {f.parent for f in deepscope_files} == {log_dir}
    logged = read_logged(log_dir)
    activations = {s: v for (t, s), v in logged.items() if t == "layer_statistics/activations"}
    assert 0 in activations
    # Step 0 is a covariance step: a token layer's rows are both ranks' micro-batches
    # of that step (2 ranks x 2 accumulated batches x 8 sequences x 12 tokens); a
    # pooled layer's, their sequences (2 x 2 x 8).
    samples = activations[0]["covariance_samples"]
    assert samples.max() == 2 * ACCUMULATE * BATCH * LENGTH, samples
    assert samples.min() == 2 * ACCUMULATE * BATCH, samples
