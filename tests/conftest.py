"""Shared fixtures: isolated cache/output folders, offline W&B, a tiny synthetic config."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import pytorch_lightning as pl

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# Small synthetic segmentation data so end-to-end runs take seconds.
TINY_SEG = [
    "task=segmentation",
    "data.synthetic.num_train=16",
    "data.synthetic.num_val=8",
    "data.synthetic.size=64",
    "data.image_size=[64,64]",
    "data.batch_size=4",
    "data.num_workers=0",
    "callbacks.progress=none",
]

# Small synthetic detection data: 128 px shapes, a handful of images.
TINY_DET = [
    "task=detection",
    "data.synthetic.num_train=16",
    "data.synthetic.num_val=8",
    "data.synthetic.size=128",
    "data.image_size=128",
    "data.batch_size=8",
    "data.eval_batch_size=8",
    "data.num_workers=0",
    "callbacks.progress=none",
]

# Small synthetic identities: 8 training and 4 held-out people, 4 faces each, 32 px crops.
TINY_REC = [
    "task=recognition",
    "data.synthetic.num_train_ids=8",
    "data.synthetic.num_val_ids=4",
    "data.synthetic.images_per_id=4",
    "data.synthetic.size=32",
    "data.image_size=[32,32]",
    "model.embedding_size=64",
    "data.batch_size=16",
    "data.num_workers=0",
    "callbacks.progress=none",
]

# Two DDP processes on the CPU (gloo): what `trainer=ddp` needs changed to run without GPUs.
CPU_DDP = [
    "trainer=ddp",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "trainer.precision=32-true",
    "trainer.sync_batchnorm=false",
    "trainer.benchmark=false",
]


@pytest.fixture(scope="session", autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.mktemp("vz")
    os.environ["VISIONZOO_CACHE"] = str(base / "cache")
    os.environ["VISIONZOO_OUTPUT"] = str(base / "outputs")
    os.environ["VISIONZOO_SHARED_DATA"] = str(SHARED_DATA)
    os.environ["WANDB_MODE"] = "offline"
    os.environ["WANDB_SILENT"] = "true"


def run_cli(
    script: str,
    *args: str,
    cwd: Path = ROOT,
    timeout: int = 600,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run ``python <script> args...`` from the repository root, capturing output; ``env``
    adds to (or replaces entries of) the current environment."""
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def run_entry(entry: Callable[[], None], *args: str) -> tuple[int, str]:
    """An entry point (``visionzoo.cli.train_entry``, ...) run in-process with ``sys.argv =
    [script, *args]``, as a subprocess would run it but without paying the start-up: (exit
    status, stderr)."""
    saved, err = sys.argv, io.StringIO()
    sys.argv = ["visionzoo", *args]
    try:
        with contextlib.redirect_stderr(err):
            try:
                entry()
                code = 0
            except SystemExit as stop:
                code = int(stop.code or 0)
    finally:
        sys.argv = saved
    return code, err.getvalue()


def compose(overrides: list[str], run_dir: Path, config_name: str = "train"):
    """Compose a config in-process (as the CLI would, plug-in families' config folders
    included) with ``paths.run_dir`` set."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from visionzoo.cli import CONFIG_DIR, searchpath

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return hydra_compose(
            config_name, overrides=[*overrides, *searchpath(), f"paths.run_dir={run_dir}"]
        )


class StopAfter(pl.Callback):
    """Ends training after ``epochs`` epochs, as an interrupted run would."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_validation_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


def fit_run(
    overrides: list[str], run_dir: Path, stop_after: int | None = None, ckpt: str | None = None
) -> tuple[pl.Trainer, pl.LightningModule]:
    """``trainer.fit`` of a composed config from seed 0, optionally stopping after
    ``stop_after`` epochs or resuming from ``ckpt``; returns (trainer, module)."""
    from visionzoo.cli import build_run

    pl.seed_everything(0, workers=True, verbose=False)
    cfg = compose(overrides, run_dir)
    trainer, module, datamodule = build_run(cfg, run_dir)
    if stop_after is not None:
        trainer.callbacks.append(StopAfter(stop_after))
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt)
    return trainer, module


KILLED_RUN = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import pytorch_lightning as pl
from conftest import compose
from visionzoo.cli import build_run

class Kill(pl.Callback):
    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.current_epoch == {epoch} and batch_idx == 1:
            os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, as a crash or an OOM kill

pl.seed_everything(0, workers=True, verbose=False)
cfg = compose({overrides!r}, __import__("pathlib").Path({run_dir!r}))
trainer, module, datamodule = build_run(cfg, __import__("pathlib").Path({run_dir!r}))
trainer.callbacks.append(Kill())
trainer.fit(module, datamodule=datamodule)
"""


def killed_run(overrides: list[str], run_dir: Path, epoch: int) -> Path:
    """Train as ``fit_run`` does in a child process that is SIGKILLed at the second batch of
    ``epoch`` (0-based) and return its ``last.ckpt``: what a crashed run leaves to resume."""
    script = KILLED_RUN.format(
        tests=str(Path(__file__).parent), overrides=overrides, run_dir=str(run_dir), epoch=epoch
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == -9, proc.stderr[-3000:]
    return run_dir / "checkpoints" / "last.ckpt"
