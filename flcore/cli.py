"""Command line: ``python -m flcore {run,schedule,sweep,verify,bench,export} ...``.

A user mistake (bad configuration, missing data, corrupted store, bad command
line) prints one line ``error: ...`` and exits with code 2; no stack trace.
Warnings print as one line ``warning: ...``.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings

from flcore.core.errors import UserError


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="parameter file (YAML), e.g. params/smoke.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key, dotted for method options (e.g. leadfl.alpha=0.2); repeatable")


def _load(args):
    from flcore.core import config

    return config.load(args.config, args.overrides)


def cmd_run(args) -> int:
    from flcore.storage.runs import run

    cfg = _load(args)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    path, doc = run(cfg, force=args.force, device=args.device, progress=not args.quiet)
    from flcore.analysis.headline import table

    print(table([doc]))  # status and accuracies in %, one decimal
    print(path)
    return 0


def cmd_schedule(args) -> int:
    from flcore.methods.schedules import plan

    print(json.dumps(plan(_load(args))))
    return 0


def cmd_verify(args) -> int:
    from flcore.experiments.verify import verify

    ok, report = verify(args.result, rounds=args.rounds, device=args.device, tolerance=args.tolerance)
    print(report)
    return 0 if ok else 1


def cmd_sweep(args) -> int:
    from flcore.experiments.sweep import sweep

    paths = sweep(args.config, executor=args.executor, workers=args.workers, address=args.address,
                  overrides=args.overrides, dry_run=args.dry_run, threads=args.threads, device=args.device,
                  pack=args.pack, cases=args.case)
    if args.paths:
        for p in paths:
            print(p)
    elif paths:
        from flcore.storage import store
        from flcore.analysis.headline import table

        print(table([store.read(p) for p in paths]))
    return 0


def cmd_export(args) -> int:
    from flcore.analysis.export import export

    paths, n_runs, n_rows = export(args.experiment, fmt=args.format, out=args.out)
    print(f"{n_runs} runs, {n_rows} rows (run x round)", file=sys.stderr)
    for p in paths:
        print(p)
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def cmd_bench(args) -> int:
    from flcore.experiments import bench as b
    from flcore.storage.runs import check_device

    if args.aggregators:
        print(json.dumps(b.bench_aggregators()))
        return 0
    if args.layout:
        print(json.dumps(b.bench_layout()))
        return 0
    check_device(args.device)
    if args.poisonedfl:
        print(json.dumps(b.bench_poisonedfl(rounds=args.rounds, device=args.device)))
        return 0
    if args.runs is not None:
        print(json.dumps(b.bench_pack(runs=args.runs, device=args.device, size="quick" if args.quick else "full")))
        return 0
    print(json.dumps(b.bench(quick=args.quick, device=args.device)))
    return 0


class _Parser(argparse.ArgumentParser):
    """A command-line mistake is one line ``error: ...`` (exit code 2), like every other user mistake."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="python -m flcore", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run a configuration or reuse its stored result; prints its headline metrics "
                                   "and the result's path last")
    _config_args(p)
    p.add_argument("--force", action="store_true", help="recompute even if a valid stored result exists")
    p.add_argument("--device", default="auto", help="auto (cuda if present), cpu or cuda")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="torch threads for the run (default: torch's, one per core)")
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("schedule", help="print the selected and malicious clients of every round as JSON")
    _config_args(p)
    p.set_defaults(fn=cmd_schedule)

    p = sub.add_parser("sweep", help="run every configuration of an experiment grid, reusing stored runs; "
                                     "prints a table of their headline metrics")
    _config_args(p)
    p.add_argument("--executor", choices=["local", "ray"], default="local")
    p.add_argument("--workers", type=int, default=None, help="parallel runs (default: from the measured optimum)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray instance)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per run (default: cores // workers)")
    p.add_argument("--dry-run", action="store_true", help="only count missing runs and estimate the time")
    p.add_argument("--paths", action="store_true",
                   help="print the stored runs' paths instead of the table of their headline metrics")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:<index> (default: CUDA if present)")
    p.add_argument("--pack", default=None,
                   help="runs per simulation, their clients trained as batched rows: a positive integer, "
                        "or auto (64 on a GPU, 1 on a CPU); default 1")
    p.add_argument("--case", type=int, action="append", default=None, metavar="N",
                   help="only case N of the file (1-based, in file order); repeatable. With --set seed=S "
                        "(which replaces the seed axis) one cell of a grid")
    p.set_defaults(fn=cmd_sweep)

    p = sub.add_parser("verify", help="recompute the first rounds of a stored run and compare every metric")
    p.add_argument("result", help="a stored result, results/<experiment>/<hash>.json")
    p.add_argument("--rounds", type=int, default=None, help="number of rounds to recompute (default: all)")
    p.add_argument("--device", default=None,
                   help="cpu, cuda or cuda:<index> (default: the kind of device the run was stored from)")
    p.add_argument("--tolerance", type=float, default=None,
                   help="accept accuracies within this absolute difference (default: exact); "
                        "needed to compare a run stored on another kind of device")
    p.set_defaults(fn=cmd_verify)

    p = sub.add_parser("bench", help="measure the engine against a naive loop and the FLOP floor; JSON last")
    p.add_argument("--quick", action="store_true", help="a reduced round (under a minute)")
    p.add_argument("--device", default="auto")
    p.add_argument("--aggregators", action="store_true",
                   help="instead: ms per call of every aggregation rule at n = 36, d = 139,960 (one CPU thread)")
    p.add_argument("--poisonedfl", action="store_true",
                   help="instead: one official-scale PoisonedFL round vs ProDiGy and the 6,000-round extrapolation")
    p.add_argument("--layout", action="store_true",
                   help="only the engine's training and evaluation channels-last against NCHW (one process, interleaved)")
    p.add_argument("--rounds", type=int, default=6, help="rounds simulated by --poisonedfl (default 6)")
    p.add_argument("--runs", type=_positive_int, default=None,
                   help="instead: round 0 of N paper-protocol runs trained as one pack (batched rows) against "
                        "the loop: client-steps and rounds per second, peak memory (e.g. --device cuda --runs 36)")
    p.set_defaults(fn=cmd_bench)

    p = sub.add_parser("export", help="write the stored runs as a tidy per-round table and a per-run summary")
    p.add_argument("--experiment", default=None, help="only this experiment's runs (default: every stored run)")
    p.add_argument("--format", choices=["csv", "parquet"], default="csv", help="file format (parquet needs pyarrow)")
    p.add_argument("--out", default="export", help="folder for rounds.<format> and runs.<format> (default: export)")
    p.set_defaults(fn=cmd_export)
    return ap


def _warning_line(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr if file is None else file)


def main(argv: list[str] | None = None) -> int:
    shown = warnings.showwarning
    warnings.showwarning = _warning_line
    try:
        args = parser().parse_args(argv)
        return args.fn(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = shown
