"""What a family's bench module declares (its ``BENCH``), and how the shared suites find it:
through the registry, never by a family's name."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytorch_lightning as pl
import torch

from visionzoo.bench.harness import Batch, PlainLoop
from visionzoo.registry import get_family, list_families


@dataclass(frozen=True)
class DataCase:
    """One input pipeline for the ``data`` suite: the config overrides that select it."""

    name: str
    overrides: list[str]
    tiny: list[str] = field(default_factory=list)  # extra overrides under --tiny
    needs: str | None = None  # a data folder relative to the repo root, when the case reads one


@dataclass(frozen=True)
class Suite:
    """A suite of ``benchmark.py``: ``run(args, device)`` returns the JSON-able result and
    ``markdown(result)`` its report; ``add_arguments`` adds the suite's own command-line
    options to its argument group."""

    run: Callable[[argparse.Namespace, torch.device], dict[str, Any]]
    markdown: Callable[[dict[str, Any]], str]
    help: str
    repeats: int = 5  # default --repeats
    warmup: int = 1  # default --warmup
    add_arguments: Callable[[Any], None] | None = None


@dataclass(frozen=True)
class FamilyBench:
    """What the shared suites need from one family (its bench module's ``BENCH``).

    ``overrides`` compose the family's default training config; ``plain_loop`` is its plain
    PyTorch loop over the module's ``nn.Module``; ``eval_forward`` runs the module's inference
    path on one batch (under ``no_grad``, eval mode, set by the caller); ``suite`` is the
    family's comparison against a reference implementation, run as ``benchmark.py <family>``.
    """

    overrides: list[str]
    # None: the family has no training loop in the shared suites (only its own comparison suite)
    plain_loop: type[PlainLoop] | None = None
    eval_forward: Callable[[pl.LightningModule, Batch, torch.device], Any] | None = None
    # overhead: pre-collated batches per timed run, ≈ 9 s of CPU training each, so that other
    # jobs' noise averages out
    overhead_batches: int = 12
    tiny: list[str] = field(default_factory=list)  # overhead: extra overrides under --tiny
    data_cases: list[DataCase] = field(default_factory=list)
    suite: Suite | None = None
    packages: tuple[str, ...] = ()  # reference packages whose versions the results record


def family_benches(*, training: bool = False) -> dict[str, FamilyBench]:
    """``BENCH`` of every registered family that has a bench module, by family name; with
    ``training``, only those with a plain training loop (the overhead and data suites')."""
    benches = {}
    for name in list_families():
        module = get_family(name).bench_module()
        if module is not None and (module.BENCH.plain_loop is not None or not training):
            benches[name] = module.BENCH
    return benches
