"""Command line: one fine-tune, with a progress bar and a one-line summary.

    python -m lmtune_widgets run --preset overfit --learning_rate 1e-4 --out run.json --plot curves.png

Every `FineTuneConfig` field is an option (`--<field> VALUE`). A bad value prints one line to stderr and
exits with status 2; no traceback for a user's mistake.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import fields

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
        kind = {"float": _number("float"), "int": _number("int"), "bool": _bool}.get(f.type, str)
        run.add_argument(f"--{f.name}", type=kind, default=None, metavar="VALUE")
    return parser




def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse already printed its one-line error and usage
        return int(exit_.code or 0)
    overrides = {f.name: getattr(args, f.name) for f in fields(FineTuneConfig) if getattr(args, f.name) is not None}
    try:
        config = FineTuneConfig.from_preset(args.preset, **overrides)
        return _run(config, args)
    except (ValueError, OSError, RuntimeError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def _run(config: FineTuneConfig, args) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the "newly initialized head" report is expected here
    hf_logging.disable_progress_bar()
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
