"""Command line: one fine-tune, with a progress bar and a one-line summary; recording and checking the atlas.

    python -m lmtune_widgets run --preset overfit --learning_rate 1e-4 --out run.json --plot curves.png
    python -m lmtune_widgets record --shard 1/2      # record the atlas's missing runs (resumable)
    python -m lmtune_widgets record --backend ray --address auto     # the same, one Ray task per run on a cluster
    python -m lmtune_widgets record --dataset reviews.csv --grid lessons --out my-atlas   # an atlas of other data
    python -m lmtune_widgets evidence --atlas my-atlas    # every lesson claim on that atlas: held, not held, not judged
    python -m lmtune_widgets verify --sample 2       # re-run 2 recorded runs; exit 0 only if they match
    python -m lmtune_widgets lab                     # = make lab, without make (Windows): JupyterLab on notebooks/
    python -m lmtune_widgets test                    # = make test, without make: Colab's stack once, then every test

Every `FineTuneConfig` field is an option (`--<field> VALUE`). A bad value prints one line to stderr and
exits with status 2; no traceback for a user's mistake.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

from .config import PRESETS, FineTuneConfig


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _number(kind):
    def parse(text: str):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        return int(value) if kind == "int" and value.is_integer() else value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lmtune_widgets", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="fine-tune once and report the verdict")
    run.add_argument("--preset", choices=sorted(PRESETS), default="good", help="start from a lesson's settings")
    run.add_argument("--out", help="save the run (JSON) here")
    run.add_argument("--plot", help="save the curves (PNG) here")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    for f in fields(FineTuneConfig):
        kind = {"float": _number("float"), "int": _number("int"), "int | None": _number("int"),
                "bool": _bool}.get(f.type, str)
        run.add_argument(f"--{f.name}", type=kind, default=None, metavar="VALUE")
    record = commands.add_parser("record", help="record the atlas's runs that are not recorded yet (resumable)")
    record.add_argument("--shard", type=_shard, default=(1, 1), metavar="I/N", help="take every N-th run, from the I-th")
    record.add_argument("--threads", type=int, default=1, help="torch threads (kept fixed; written in every run)")
    record.add_argument("--section", action="append", help="only sections whose name starts with this (repeatable)")
    record.add_argument("--limit", type=int, help="record at most this many runs")
    record.add_argument("--quiet", action="store_true", help="no progress bar")
    record.add_argument("--backend", choices=("local", "ray"), default="local",
                        help="local: this process; ray: one Ray task per run (--threads CPUs each, or a GPU)")
    record.add_argument("--address", help="with --backend ray: a Ray cluster ('auto', 'ray://HOST:10001'); "
                                          "default: a local Ray on this machine's cores")
    record.add_argument("--dataset", help="record on this data instead of the bundled messages (replaces `dataset` "
                                          "in every run)")
    record.add_argument("--text-column", help="with --dataset: its column of texts, where not found by name")
    record.add_argument("--label-column", help="with --dataset: its column of classes, where not found by name")
    record.add_argument("--grid", choices=sorted(GRIDS), action="append",
                        help="only these grids of the atlas (repeatable; with --section, both are recorded)")
    record.add_argument("--out", help="the atlas folder to record into (default: the bundled data/atlas)")
    verify = commands.add_parser("verify", help="re-run recorded runs and compare every number with the record")
    verify.add_argument("--sample", type=int, default=2, help="how many recorded runs to re-run")
    verify.add_argument("--cheapest", action="store_true", help="the cheapest runs instead of random ones")
    verify.add_argument("--seed", type=int, help="seed of the random choice")
    evidence = commands.add_parser("evidence", help="every lesson claim on an atlas: held, not held or not judged "
                                                     "(a report: exit 0 whatever it finds)")
    evidence.add_argument("--atlas", metavar="FOLDER", help="a folder of recorded runs (default: the bundled atlas)")
    evidence.add_argument("--dataset", help="when the folder holds runs on several data sets: the one to judge")
    evidence.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="its CPU or its GPU records")
    commands.add_parser("lab", help="open the lessons in JupyterLab, offline (what `make lab` does once set up)")
    commands.add_parser("test", help="run every test, offline (what `make test` does once set up); "
                                     "arguments after it go to pytest")
    return parser


GRIDS = {"one-knob": "one knob", "lessons": "lessons"}  # --grid NAME: the grid() sections whose names start so


def _shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N such as 1/2, got {text!r}") from None
    return index, count




OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def checkout() -> Path:
    """The repository the kit was installed from (`pip install -e .`): its notebooks and tests live there."""
    for folder in (Path(__file__).resolve().parent.parent, Path.cwd()):
        if (folder / "notebooks").is_dir() and (folder / "tests").is_dir() and (folder / "pyproject.toml").exists():
            return folder
    raise OSError("lab and test need a clone of the kit's repository: run them from its folder, after "
                  "`pip install -e \".[test]\"` there (see README.md, 'Without make')")


def _lab(rest: list[str]) -> int:
    root = checkout()
    return subprocess.call([sys.executable, "-m", "jupyterlab", f"--notebook-dir={root / 'notebooks'}", *rest],
                           env={**os.environ, **OFFLINE}, cwd=root)


def _test(rest: list[str]) -> int:
    root = checkout()
    if not (root / ".venv-colab" / ".stack-built").exists():  # as `make test`: Colab's stack, built once
        built = subprocess.call([sys.executable, str(root / "tests" / "stacks" / "build_stack.py"),
                                 str(root / ".venv-colab")], cwd=root)
        if built:
            return built
    return subprocess.call([sys.executable, "-m", "pytest", "-q", *rest], env={**os.environ, **OFFLINE}, cwd=root)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (["lab"], ["test"]):  # the rest goes to JupyterLab or pytest as it is
        try:
            return (_lab if argv[0] == "lab" else _test)(argv[1:])
        except OSError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse already printed its one-line error and usage
        return int(exit_.code or 0)
    try:
        if args.command == "record":
            return _record(args)
        if args.command == "verify":
            return _verify(args)
        if args.command == "evidence":
            return _evidence(args)
        overrides = {f.name: getattr(args, f.name) for f in fields(FineTuneConfig) if getattr(args, f.name) is not None}
        config = FineTuneConfig.from_preset(args.preset, **overrides)
        return _run(config, args)
    except (ValueError, OSError, RuntimeError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the "newly initialized head" report is expected here
    hf_logging.disable_progress_bar()


def _record(args) -> int:
    from .atlas import record

    _quiet_libraries()
    if args.address and args.backend != "ray":
        raise ValueError("--address is where a Ray cluster is: add --backend ray")
    sections = [*(args.section or ()), *(GRIDS[name] for name in args.grid or ())] or None
    count = record(shard=args.shard, threads=args.threads, sections=sections, limit=args.limit, quiet=args.quiet,
                   backend=args.backend, address=args.address, folder=args.out, dataset=args.dataset,
                   text_column=args.text_column, label_column=args.label_column)
    print(f"recorded {count} runs")
    return 0


def _verify(args) -> int:
    from .atlas import verify

    _quiet_libraries()
    return 0 if verify(sample=args.sample, cheapest=args.cheapest, seed=args.seed) else 1


def _evidence(args) -> int:
    """The lessons' claims on the atlas in --atlas: a report, so 0 whatever they find; 2 for a folder that is not an
    atlas (missing, no recorded runs, a file that is not one, runs on several data sets and no --dataset)."""
    from . import atlas, evidence

    folder = Path(args.atlas) if args.atlas else atlas.atlas_dir()
    if not folder.is_dir():
        raise OSError(f"{folder} is not a folder")
    if not any(folder.glob(f"{args.device}-*.jsonl")):
        raise ValueError(f"{folder} holds no recorded runs ({args.device}-*.jsonl)")
    book = atlas.load(args.device, folder=folder, reload=True)  # as the folder is now
    datasets = book.datasets()
    if args.dataset is None and len(datasets) > 1:
        named = ", ".join(sorted(d if d is not None else "the bundled data" for d in datasets))
        raise ValueError(f"{folder} holds runs on several data sets ({named}): pick one with --dataset")
    dataset = args.dataset if args.dataset is not None else next(iter(datasets))
    if dataset not in datasets:
        raise ValueError(f"{folder} holds no runs on {dataset}")
    book = book if dataset is None else book.on_data(dataset)
    print(f"{len(book)} recorded runs in {folder} ({args.device}; on {dataset or 'the bundled data'})")
    evidence.report(book)
    return 0


def _run(config: FineTuneConfig, args) -> int:
    _quiet_libraries()
    from .runs import diagnose
    from .training import Callback, fine_tune

    class Progress(Callback):
        def __init__(self):
            self.bar = None

        def on_train_begin(self, run):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=run.meta["total_steps"], unit="step", disable=args.quiet, file=sys.stderr)

        def on_step_end(self, run, step, loss):
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

        def on_evaluate(self, run, point):
            self.bar.set_postfix(loss=f"{point['train_loss']:.3f}", val_acc=f"{point['eval_accuracy']:.3f}")

        def on_train_end(self, run):
            if self.bar is not None:
                self.bar.close()

    start = time.perf_counter()
    run = fine_tune(config, callbacks=[Progress()])
    seconds = time.perf_counter() - start
    if args.out:
        run.save(args.out)
    if args.plot:
        from .plotting import plot_run

        plot_run(run).savefig(args.plot, dpi=110, bbox_inches="tight")
    d = diagnose(run)
    best = f"best epoch {d.best_epoch:.2f}" if d.best_epoch is not None else "no best epoch"
    print(f"{d.verdict} | {best} | best accuracy {d.best_accuracy:.3f} | status {run.status} | {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
