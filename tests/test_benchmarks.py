"""Every benchmark runs, in smoke mode (the same work at a tiny size), as its own process; what it writes has every
figure it should, all finite; and the tables of benchmarks/README.md are what benchmarks/report.py makes of the
committed results files. No timing thresholds: a benchmark's figures are for the README, not for a test."""
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

import report  # noqa: E402  (benchmarks/report.py)

# For each benchmark: the figures its results file must hold (dotted paths), its ratio(s), and what it prints.
EXPECTED = {
    "bench_matmul": (["gflops_median", "gflops_best"], ["median_over_best"], ["GFLOP/s"]),
    "bench_panel": (["redraw_alone.wall_old_ms", "redraw_alone.wall_new_ms", "redraw_alone.cpu_new_ms",
                     "redraw_on_band.wall_new_ms", "control_change_ms", "control_change_onto_recorded_ms",
                     "atlas_load_ms", "atlas_runs"], ["in_place_over_new_figure", "in_place_over_new_figure_on_band"],
                    ["the live run alone", "control change (observer)", "loading the atlas"]),
    "bench_speed": (["kit_train_eval_s", "kit_setup_s", "kit_cache_s", "kit_finish_s", "kit_first_point_s",
                     "kit_best_accuracy", "kit_max_rss_mb", "kit_flop", "kit_matmul_gflops", "kit_floor_s",
                     "trainer_train_eval_s", "trainer_best_accuracy", "trainer_max_rss_mb", "cli_process_s",
                     "cli_max_rss_mb"], ["trainer_over_kit", "measured_over_floor"],
                    ["Trainer / kit time", "measured / floor", "floor of the kit's training + evaluation"]),
    "bench_process": ([f"{side}.{k}" for side in ("cold", "warm") for k in ("process_s", "train_s", "cache_s",
                                                                           "finish_s")],
                      ["warm_over_cold_process_s", "warm_over_cold_train_s"], ["cold and warm histories identical: True"]),
    "bench_search": (["1x1.wall_s", "1x1.trial_s", "2x1.wall_s", "2x1.trial_s"], ["speedup_1x1", "speedup_2x1"],
                     ["| workers | threads each |"]),
    "bench_ray_record": (["1.wall_s", "1.run_s", "2.wall_s", "2.run_s"], ["speedup_1", "speedup_2"],
                         ["| Ray workers |", "records of every setup the same numbers: True"]),
    "bench_llm": (["zero_shot_accuracy", "final_accuracy", "zero_shot_loss", "final_loss", "s_per_example",
                   "wall_s", "load_s", "cache_s", "train_s", "finish_s"], ["final_over_zero_shot_accuracy"],
                  ["zero-shot accuracy", "s per training example"]),
    "bench_llm_memory": (["lora_1.measured_rise_mb", "lora_1.estimated_rise_mb", "lora_1.estimate_over_measured",
                          "lora_1.s_per_step_after_first", "lora_1.baseline_mb", "lora_1.trainable"],
                         ["estimate_over_measured_lora_1"], ['"method": "lora"']),
    "gpu_check": ([f"{case}.{k}" for case in ("minilm_native", "minilm_fp16_as_t4", "llm_lora")
                   for k in ("seconds", "train_eval_s", "kept_accuracy", "skipped_steps")],
                  ["fp16_over_native_train_eval_s", "llm_peak_over_estimate"],
                  ["float16 (T4 path) / native precision", "recorded CPU band"]),
}
ARGS = {"gpu_check": ["--device", "cpu"]}  # on CPU: the same code, the precision a GPU would choose aside


def committed_results() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((BENCH / "results").glob("*.json"))}


def at(tree: dict, dotted: str):
    for key in dotted.split("."):
        assert isinstance(tree, dict) and key in tree, f"{dotted} is missing"
        tree = tree[key]
    return tree


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_benchmark_runs_in_smoke_mode_and_writes_every_figure(name, tmp_path):
    figures, ratios, printed = EXPECTED[name]
    before = committed_results()
    out = tmp_path / f"{name}.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "MPLBACKEND": "Agg", "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), "--smoke", "--out", str(out), *ARGS.get(name, [])],
                          cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    for text in printed:
        assert text in done.stdout, f"{name} no longer prints {text!r}:\n{done.stdout[-2000:]}"
    result = json.loads(out.read_text())
    assert result["benchmark"] == name and result["smoke"] is True and result["source"] == "measured"
    assert result["machine"]["cpu"] and result["machine"]["cores"] >= 1 and len(result["date"]) == 10
    assert set(result["versions"]) >= {"python", "torch", "transformers"}
    for figure in figures:
        value = at(result["medians"], figure)
        assert isinstance(value, (int, float)) and math.isfinite(value), (figure, value)
    assert set(ratios) <= set(result["ratios"]), result["ratios"]
    not_finite = [where for where, value in numbers(result) if not math.isfinite(value)]
    assert not not_finite, not_finite
    assert report.RENDER[name](result).startswith("| ")  # the README's table can be made from what it wrote
    assert committed_results() == before  # a smoke run never writes over the committed figures


def numbers(tree, path=""):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from numbers(value, f"{path}.{key}")
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from numbers(value, f"{path}[{i}]")
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield path, float(tree)


def test_readme_tables_are_generated_from_the_committed_results():
    text = (BENCH / "README.md").read_text()
    regions = report.REGION.findall(text)
    assert sorted(m[1] for m in regions) == sorted(EXPECTED)  # one generated table per benchmark
    for name in EXPECTED:
        committed = json.loads((BENCH / "results" / f"{name}.json").read_text())
        assert committed["smoke"] is False and committed["benchmark"] == name
        assert committed["source"] == "measured" or committed["source"].startswith("transcribed from README (measured ")
    assert report.render(text) == text, "benchmarks/README.md is stale or hand-edited: run python benchmarks/report.py"
