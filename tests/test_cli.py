"""The command line: a run with a summary line, files written, and one-line errors for bad input."""
import json
import os
import subprocess
import sys

import pytest

from lmtune_widgets import FineTuneConfig
from lmtune_widgets.cli import main


def cli(*args, timeout=240):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "lmtune_widgets", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_cli_run_prints_a_summary_and_writes_files(tmp_path):
    out, plot = tmp_path / "run.json", tmp_path / "curves.png"
    result = cli("run", "--max_train_samples", "48", "--max_eval_samples", "32", "--num_train_epochs", "1",
                 "--freeze_layers", "5", "--out", str(out), "--plot", str(plot))
    assert result.returncode == 0, result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.split(" | ")[0] in {"good fit", "underfitting", "overfitting", "diverged"}
    assert "best epoch" in summary and "best accuracy" in summary and summary.endswith(" s")
    assert "step" in result.stderr  # the progress bar
    assert json.loads(out.read_text())["config"]["max_train_samples"] == 48
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args,message", [
    (["--learning_rate", "7"], "error: learning_rate=7.0 is out of range: allowed from 1e-08 to 1"),
    (["--learning_rate", "fast"], "expected a number, got 'fast'"),
    (["--preset", "perfect"], "invalid choice: 'perfect'"),
    (["--freeze_layers", "9", "--max_train_samples", "16"], "error: freeze_layers=9 is out of range: allowed from 0 to 6"),
    (["--model_name", "no-such/model"], "error: model_name='no-such/model'"),
])
def test_cli_bad_input_is_one_line_without_traceback(args, message, capsys):
    code = main(["run", "--quiet", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("error") or "error:" in line]) == 1


def test_cli_takes_the_2026_knobs_under_their_transformers_and_peft_names():
    from lmtune_widgets.cli import build_parser

    args = build_parser().parse_args(["run", "--data_seed", "3", "--label_smoothing_factor", "0.1", "--use_rslora",
                                      "true", "--lr_scheduler_type", "warmup_stable_decay", "--lr_decay_ratio", "0.3",
                                      "--lora_target_modules", "all-linear"])
    assert (args.data_seed, args.label_smoothing_factor, args.use_rslora, args.lr_decay_ratio) == (3, 0.1, True, 0.3)
    config = FineTuneConfig(**{k: v for k, v in vars(args).items() if k in FineTuneConfig.__dataclass_fields__
                               and v is not None})
    assert config.lora_target_modules == ("all-linear",) and config.lr_scheduler_type == "warmup_stable_decay"


def test_cli_refuses_a_bad_new_knob_by_name(capsys):
    assert main(["run", "--quiet", "--data_seed", "1.5"]) == 2
    assert "data_seed=1.5 is not valid: expected a whole number" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["record", "--shard", "3/2"], "error: shard=3/2 is not valid: expected i/n with 1 <= i <= n"),
    (["record", "--shard", "half"], "expected I/N such as 1/2, got 'half'"),
])
def test_cli_record_names_a_bad_shard(args, message, capsys):
    assert main(args) == 2
    assert message in capsys.readouterr().err
