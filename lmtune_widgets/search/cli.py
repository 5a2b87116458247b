"""The search's command line: `python -m lmtune_widgets.search --help` runs a worker from a terminal."""
from __future__ import annotations

import argparse
import os
import sys

from ..config import FineTuneConfig
from .class_study import HEARTBEAT_SECONDS, StudyUnavailable
from .optuna_search import search


def main(argv: list[str] | None = None) -> int:
    """A search worker from a terminal; start several, on one machine or many, on one storage URL."""
    parser = argparse.ArgumentParser(prog="python -m lmtune_widgets.search", description=main.__doc__)
    parser.add_argument("--storage", required=True, help="an Optuna RDB URL (or, with --backend ray, a folder)")
    parser.add_argument("--study-name", default="lmtune")
    parser.add_argument("--trials", type=int, default=4, help="trials this worker runs")
    parser.add_argument("--learner", default=None, help="your name, stored with each trial")
    parser.add_argument("--settings", default="{}",
                        help='the base settings as a share string, e.g. {"max_train_samples":400}')
    parser.add_argument("--backend", choices=["optuna", "ray"], default="optuna")
    parser.add_argument("--fresh", action="store_true", help="delete the study first (careful: everyone's trials)")
    parser.add_argument("--heartbeat", type=int, default=HEARTBEAT_SECONDS, help="seconds between heartbeats")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (several workers on one machine: cores / workers; 1 on a shared machine)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        base = FineTuneConfig.from_share_string(args.settings)
        found = search(base, n_trials=args.trials, storage=args.storage, study_name=args.study_name,
                       learner=args.learner, backend=args.backend, fresh=args.fresh or None,
                       heartbeat_interval=args.heartbeat)
    except (StudyUnavailable, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; finished trials are stored", file=sys.stderr)
        return 130
    print(f"best so far: {found.best_value:.4f} with {found.best_params}")
    return 0
