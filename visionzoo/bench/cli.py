"""Reproducible speed and quality benchmarks for visionzoo.

    python scripts/benchmark.py <suite> [<suite> ...] [--out bench_out] [--tiny] [--repeats N]
                                [--warmup N] [--device auto|cpu|cuda] [--override KEY=VALUE ...]

Suites: ``overhead`` (framework cost per family), ``data`` (the input pipeline per dataset case)
and one per family whose bench module defines a comparison against a reference implementation,
named after the family. Each writes ``<out>/<suite>.json`` and ``<out>/<suite>.md``; several
suites named on one command line run one after the other in one process.

Every figure is the median over ``--repeats`` timed runs after ``--warmup`` untimed-for-results
runs; wherever two sides are compared they alternate within one process, so load from other
jobs on the machine hits both sides alike.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from visionzoo.bench import data, overhead
from visionzoo.bench.cases import Suite, family_benches
from visionzoo.bench.harness import REPO, load_average, machine_info, quiet, resolve_device
from visionzoo.bench.report import write_result
from visionzoo.family import load_plugins


def suites() -> dict[str, Suite]:
    """The generic suites, then each family's comparison suite under the family's name."""
    found = {"overhead": overhead.SUITE, "data": data.SUITE}
    found.update({name: b.suite for name, b in family_benches().items() if b.suite is not None})
    return found


def parse_args(
    available: dict[str, Suite], argv: Sequence[str] | None = None
) -> argparse.Namespace:
    """The command line: common options, then each suite's own group."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "suites",
        nargs="+",
        choices=list(available),
        metavar="suite",
        help=f"the suites to run, in order (options below): {', '.join(available)}",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("bench_out"),
        help="folder for <suite>.json / <suite>.md (default: bench_out)",
    )
    p.add_argument("--tiny", action="store_true", help="a few steps only (smoke test, < 60 s)")
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed repeats per side (default: the suite's, named with its options; 1 with --tiny)",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="warm-up rounds before the timed ones (default: the suite's; 0 with --tiny)",
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra Hydra override for our side's config (repeatable)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="a family suite's training epochs (default and meaning: see the suite's options)",
    )
    p.add_argument(
        "--families",
        nargs="+",
        default=None,
        help="overhead / data: families to run (default: all with a bench module)",
    )
    for name, suite in available.items():
        if suite.add_arguments is not None:
            defaults = f"default --repeats {suite.repeats}, --warmup {suite.warmup}"
            suite.add_arguments(p.add_argument_group(name, f"{suite.help}; {defaults}"))
    args = p.parse_args(argv)
    if (args.repeats is not None and args.repeats < 1) or (
        args.warmup is not None and args.warmup < 0
    ):
        p.error("--repeats must be ≥ 1 and --warmup ≥ 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    load_plugins()  # families defined outside the package bring their bench modules too
    available = suites()
    args = parse_args(available, argv)
    args.out = args.out.resolve()
    # Data paths in the configs (../shared/data) are relative to the repository root.
    os.chdir(REPO)
    args.out.mkdir(parents=True, exist_ok=True)
    quiet()
    device = resolve_device(args.device)
    command = "python scripts/benchmark.py " + " ".join(
        sys.argv[1:] if argv is None else list(argv)
    )
    packages = sorted({p for b in family_benches().values() for p in b.packages})
    for name in dict.fromkeys(args.suites):
        suite = available[name]
        # --repeats / --warmup default to each suite's own (1 and 0 with --tiny)
        resolved = argparse.Namespace(**vars(args))
        if args.repeats is None:
            resolved.repeats = 1 if args.tiny else suite.repeats
        if args.warmup is None:
            resolved.warmup = 0 if args.tiny else suite.warmup
        start, load_start = time.perf_counter(), load_average()
        result = {
            "suite": name,
            "command": command,
            "tiny": args.tiny,
            "repeats": resolved.repeats,
            "warmup": resolved.warmup,
            "machine": machine_info(packages),
            "load_average_start": load_start,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        result.update(suite.run(resolved, device))
        result["runtime_s"] = round(time.perf_counter() - start, 1)
        result["load_average_end"] = load_average()
        json_path, md_path = write_result(args.out, name, result, suite.markdown)
        print(f"wrote {json_path} and {md_path} ({result['runtime_s']:.0f} s)", flush=True)
    return 0
