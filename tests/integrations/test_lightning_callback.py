"""Lightning's DeepscopeCallback with real Lightning, read back by a real tensorboard.

Two 2-epoch `Trainer.fit`s of a small MLP on sklearn's digits (CPU, a
TensorBoardLogger under one log dir): one in float32 with a step per batch,
one under `precision="bf16-mixed"` with `accumulate_grad_batches=2` (29
batches an epoch: 15 optimizer steps, the last one of a single batch). The
module records its own reference at Lightning's `on_before_optimizer_step`
(each parameter's gradient norm and weights, float64) and after the step
(‖ΔW‖/‖W‖). The tests check that the callback wrote into the logger's own
log dir, logged the update ratios and gradient norms at the trainer's
optimizer steps 0, every, 2·every, ... with the reference's values, left no
hook on the optimizer, and that tensorboard (both loaders) lists the kinds a
default watch() logs. Also: the `pytorch_lightning` package's Trainer, a fit
that raises, and Lightning's DDP (ddp_fork, 2 gloo processes).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
L = pytest.importorskip(
    "lightning.pytorch", reason="the lightning extra: pip install -e .[lightning]"
)

import deepscope  # noqa: E402
from deepscope.integrations.lightning import DeepscopeCallback  # noqa: E402
from tests.integrations.served import (  # noqa: E402
    DEFAULT_KINDS,
    kinds_of,
    reference_table,
    served_series,
)
from tests.logged_numbers import event_files, read_logged  # noqa: E402
from tests.route_helpers import LOADERS  # noqa: E402

EVERY = 4
OPTIONS = {"every": EVERY, "spectra_every": 8, "layer_statistics_every": 8}
BATCH = 64
EPOCHS = 2
EPS32 = float(np.finfo(np.float32).eps)
# deepscope's norms are float32 sums (pairwise: log2(2,048 elements) = 11 roundings
# deep) stored as float32 (half an ulp), against the reference's float64.
RTOL = 16 * EPS32


def _digits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return torch.utils.data.TensorDataset(
        torch.tensor(x, dtype=torch.float32) / 16, torch.tensor(y, dtype=torch.long)
    )


def _module_class(base, qualname: str):
    """A LightningModule class of `base` (either package's) that records its own reference."""

    class Digits(base):
        def __init__(self, fail_at: int | None = None):
            super().__init__()
            torch.manual_seed(0)
            self.net = torch.nn.Sequential(
                torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
            )
            self.fail_at = fail_at
            self.grad_norms: dict[int, dict[str, float]] = {}
            self.ratios: dict[int, dict[str, float]] = {}
            self._before: tuple[int, dict[str, torch.Tensor]] | None = None

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            if self.fail_at is not None and self.trainer.global_step == self.fail_at:
                raise RuntimeError("planted failure")
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self(x), y)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-2)

        def train_dataloader(self):
            generator = torch.Generator().manual_seed(0)
            return torch.utils.data.DataLoader(
                _digits(), batch_size=BATCH, shuffle=True, generator=generator
            )

        # The reference: Lightning's own hook, right before the optimizer's update.
        def on_before_optimizer_step(self, optimizer):
            step = self.trainer.global_step
            params = dict(self.named_parameters())
            self.grad_norms[step] = {
                n: float(torch.linalg.vector_norm(p.grad.double())) for n, p in params.items()
            }
            self._before = (step, {n: p.detach().double().clone() for n, p in params.items()})

        def on_train_batch_end(self, outputs, batch, batch_idx):
            if self._before is None or self.trainer.global_step != self._before[0] + 1:
                return  # an accumulating batch: no step taken
            step, before = self._before
            self.ratios[step] = {
                n: float(
                    torch.linalg.vector_norm(p.detach().double() - before[n])
                    / torch.linalg.vector_norm(before[n])
                )
                for n, p in self.named_parameters()
            }
            self._before = None

    Digits.__qualname__ = Digits.__name__ = qualname  # picklable (ddp_spawn) as a module global
    return Digits


Digits = _module_class(L.LightningModule, "Digits")


def _fit(root: Path, name: str, trainer_module=L, module_class=None, **trainer_options):
    from importlib import import_module

    loggers = import_module(f"{trainer_module.__name__}.loggers")
    callback = DeepscopeCallback(**OPTIONS)
    model = (module_class or Digits)(fail_at=trainer_options.pop("fail_at", None))
    trainer_options = {"max_epochs": EPOCHS, "devices": 1, **trainer_options}
    trainer = trainer_module.Trainer(
        accelerator="cpu",
        logger=loggers.TensorBoardLogger(str(root), name=name),
        callbacks=[callback],
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        **trainer_options,
    )
    return trainer, model, callback


FITS = {
    "float32": {},
    "bf16-accumulated": {"precision": "bf16-mixed", "accumulate_grad_batches": 2},
}


@pytest.fixture(scope="module")
def fits(tmp_path_factory):
    """Each of FITS trained under one log dir: name → (trainer, model, callback)."""
    root = tmp_path_factory.mktemp("lightning")
    done = {}
    for name, options in FITS.items():
        trainer, model, callback = _fit(root, name, **options)
        trainer.fit(model)
        done[name] = (trainer, model, callback)
    return root, done


def _batches_per_epoch() -> int:
    return math.ceil(len(_digits()) / BATCH)


@pytest.mark.parametrize("name", list(FITS))
def test_steps_are_the_trainers_optimizer_steps(fits, name):
    _, done = fits
    trainer, model, callback = done[name]
    accumulate = FITS[name].get("accumulate_grad_batches", 1)
    steps = EPOCHS * math.ceil(_batches_per_epoch() / accumulate)
    assert trainer.global_step == steps
    assert callback.monitor.step == steps
    assert callback.monitor.stats.steps_seen == steps
    assert callback.monitor.stats.error_count == 0, callback.monitor.stats.errors
    assert sorted(model.grad_norms) == list(range(steps))  # the reference saw every step


@pytest.mark.parametrize("name", list(FITS))
def test_writes_into_the_loggers_log_dir(fits, name):
    _, done = fits
    trainer, _, callback = done[name]
    log_dir = Path(trainer.logger.log_dir)
    assert Path(callback.log_dir) == log_dir
    files = event_files(log_dir)
    assert len(files) == 2, files  # the logger's scalars and deepscope's, side by side
    assert all(f.parent == log_dir for f in files)
    logged = read_logged(log_dir)
    tags = {tag for tag, _ in logged}
    assert tags == {
        "update_ratios",
        "layer_statistics/parameters",
        "layer_statistics/activations",
        "spectra/net.0",
        "spectra/net.2",
    }


@pytest.mark.parametrize("name", list(FITS))
def test_hooks_are_removed_after_fit(fits, name):
    _, done = fits
    trainer, model, _ = done[name]
    optimizer = trainer.optimizers[0]
    assert not optimizer._optimizer_step_pre_hooks
    assert not optimizer._optimizer_step_post_hooks
    # The optimizer can be watched again (a second open monitor would be refused).
    writer = deepscope.SummaryWriter(str(trainer.logger.log_dir) + "-again")
    deepscope.watch(model, optimizer, writer, every=1).close()
    writer.close()


@pytest.mark.parametrize("load_fast", LOADERS)
def test_tensorboard_serves_the_reference(fits, tensorboard_server, load_fast):
    root, done = fits
    base = tensorboard_server(root, load_fast)
    for name, (trainer, model, _) in done.items():
        run = f"{name}/version_0"
        expected = list(range(0, trainer.global_step, EVERY))
        served = served_series(base, run, expected)
        assert kinds_of(served.tags) == DEFAULT_KINDS
        names = [n for n, _ in model.named_parameters()]
        assert served.ratio_names == names
        want = reference_table(model.ratios, served.ratio_steps, names)
        np.testing.assert_allclose(served.ratios, want, rtol=RTOL, err_msg=run)
        # The gradient norms are the step's own gradients (Lightning computes them inside
        # optimizer.step(), after torch's pre-hooks): the reference's, never the step before's.
        got = served.grad_norms[:, [served.norm_names.index(n) for n in names]]
        want = reference_table(model.grad_norms, served.norm_steps, names)
        np.testing.assert_allclose(got, want, rtol=RTOL, err_msg=run)


def test_pytorch_lightning_trainer(tmp_path):
    pl = pytest.importorskip("pytorch_lightning")
    trainer, model, callback = _fit(
        tmp_path,
        "pl",
        trainer_module=pl,
        module_class=_module_class(pl.LightningModule, "PLDigits"),
    )
    assert isinstance(callback, pl.Callback) and isinstance(callback, L.Callback)
    trainer.fit(model)
    assert callback.monitor.step == trainer.global_step == EPOCHS * _batches_per_epoch()
    assert Path(callback.log_dir) == Path(trainer.logger.log_dir)
    logged = read_logged(Path(trainer.logger.log_dir))
    assert ("layer_statistics/parameters", 8) in logged
    assert not trainer.optimizers[0]._optimizer_step_pre_hooks


def test_a_fit_that_raises_closes_the_monitor(tmp_path):
    trainer, model, callback = _fit(tmp_path, "fails", fail_at=6)
    with pytest.raises(RuntimeError, match="planted failure"):
        trainer.fit(model)
    assert callback.monitor.step == 6
    optimizer = trainer.optimizers[0]
    assert not optimizer._optimizer_step_pre_hooks and not optimizer._optimizer_step_post_hooks
    logged = read_logged(Path(trainer.logger.log_dir))  # written out when it failed
    assert {step for tag, step in logged if tag == "layer_statistics/parameters"} == {0, 4}


def test_without_a_tensorboard_logger_it_writes_under_default_root_dir(tmp_path):
    callback = DeepscopeCallback(**OPTIONS)
    trainer = L.Trainer(
        max_steps=5,
        accelerator="cpu",
        logger=False,
        default_root_dir=str(tmp_path),
        callbacks=[callback],
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    trainer.fit(Digits())
    assert Path(callback.log_dir) == tmp_path / "deepscope"
    assert ("layer_statistics/parameters", 4) in read_logged(tmp_path / "deepscope")


def test_a_resumed_fit_continues_the_global_step(tmp_path):
    """fit(ckpt_path=...) restores the global step after on_fit_start: watch() starts there."""
    trainer, model, _ = _fit(tmp_path, "resumed", max_epochs=-1, max_steps=6)
    trainer.fit(model)
    checkpoint = tmp_path / "six.ckpt"
    trainer.save_checkpoint(str(checkpoint))
    again, model, callback = _fit(tmp_path, "resumed", max_epochs=-1, max_steps=13)
    again.fit(model, ckpt_path=str(checkpoint))
    assert callback.monitor.step == again.global_step == 13
    assert callback.monitor.stats.steps_seen == 7
    logged = read_logged(Path(again.logger.log_dir))  # version_1
    assert sorted(s for t, s in logged if t == "layer_statistics/parameters") == [8, 12]


def test_pickled_callback(fits):
    """ddp_spawn pickles the callback: its options travel, a fit's monitor and hooks do not."""
    import pickle

    _, done = fits
    _, _, callback = done["float32"]
    copy = pickle.loads(pickle.dumps(callback))
    assert copy.watch_options == OPTIONS
    assert copy.monitor is None and copy._attached is None and copy._rearm_handle is None


def test_options_the_trainer_sets_are_refused():
    with pytest.raises(TypeError, match="come from the Lightning trainer"):
        DeepscopeCallback(optimizer=None)


def test_ddp_rank_zero_writes(tmp_path):
    """Lightning's DDP on 2 gloo processes: rank 0 alone writes, activations of both ranks.

    Launched by fork ("ddp_fork": the children start with what this process
    imported; "ddp_spawn" re-imports torch and Lightning in each, 30 s here).
    The callback is the same under every launcher; test_pickled_callback covers
    what ddp_spawn does to it.
    """
    trainer, model, _ = _fit(tmp_path, "ddp", strategy="ddp_fork", devices=2, max_epochs=1)
    trainer.fit(model)
    log_dir = tmp_path / "ddp" / "version_0"
    # 29 batches split over 2 ranks: 15 a rank, one optimizer step each.
    steps = math.ceil(_batches_per_epoch() / 2)
    files = event_files(tmp_path)
    assert len(files) == 2 and all(f.parent == log_dir for f in files), files  # rank 0's writers
    logged = read_logged(log_dir)
    norm_steps = sorted(step for tag, step in logged if tag == "layer_statistics/parameters")
    assert norm_steps == list(range(0, steps, EVERY))
    activations = {s: v for (t, s), v in logged.items() if t == "layer_statistics/activations"}
    assert sorted(activations) == list(range(0, steps, 8))
    # Step 0 is a covariance step: its samples are both ranks' batches (2 × 64), not rank 0's.
    np.testing.assert_array_equal(activations[0]["covariance_samples"], [2 * BATCH] * 3)
