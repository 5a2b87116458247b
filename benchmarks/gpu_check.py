"""The GPU path, proved in one command: the default MiniLM run in bfloat16 and in float16 (as on Colab's T4), and
the `llm_lora` preset, each against the recorded CPU band of the same settings and the memory it was expected to take.

    python benchmarks/gpu_check.py                      # on a CUDA machine: about a minute on an H200
    python benchmarks/gpu_check.py --device cpu --smoke # seconds on CPU: the same code, tiny runs (make test)

The figures go to benchmarks/results/gpu_check.json (`--out` elsewhere), from which benchmarks/README.md's table
is generated.

For each case it prints: the precision the kit chose, seconds of training and evaluation, the kept model's
validation accuracy against the recorded band (lowest to highest over the recorded seeds, all made on CPU in
float32), steps that float16 skipped on overflow, and the peak GPU memory. For the LLM the peak is set against
`memory.estimate` of one training step (float32 weights, as autocast keeps them, + LoRA's gradients and AdamW
states + activations of a full batch of `max_length` tokens); the peak also holds evaluation's larger batches and
the allocator's slack. `memory.estimate` describes Llama-style decoders, so MiniLM's peak is printed alone.

"float16 as on a T4": the kit chooses bfloat16 from compute capability 8.0 up and float16 with a gradient scaler
below it (`devices.pick_precision`). The T4 case reports capability 7.5 to the kit, so the same code takes the
float16 path on a newer GPU. A GPU run is the same experiment as the CPU record with other rounding: it should land
within the band's noise, not on one of its lines.
"""
from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from unittest import mock

import torch
from _results import SMOKE, load_average, parser, write

from lmtune_widgets import FineTuneConfig, atlas, fine_tune

SMOKE_LLM = dict(max_train_samples=8, max_eval_samples=8, per_device_train_batch_size=4, num_train_epochs=1,
                 evals_per_epoch=1, freeze_layers=28)


@contextmanager
def reported_capability(capability: tuple[int, int] | None):
    """Make the kit see another compute capability (the T4's 7.5), or change nothing."""
    if capability is None:
        yield
        return
    with mock.patch.object(torch.cuda, "get_device_capability", return_value=capability):
        yield


def cases(device: str, smoke: bool) -> list[tuple[str, str, FineTuneConfig, tuple[int, int] | None]]:
    minilm = FineTuneConfig(device=device)
    llm = FineTuneConfig.from_preset("llm_lora", device=device)
    if smoke:
        minilm, llm = minilm.replace(**SMOKE), llm.replace(**SMOKE_LLM)
    return [("minilm_native", "minilm, native precision", minilm, None),
            ("minilm_fp16_as_t4", "minilm, float16 as on a T4", minilm, (7, 5)),
            ("llm_lora", "llm_lora preset", llm, None)]


def recorded_band(config: FineTuneConfig) -> dict:
    """The kept accuracies of the recorded CPU runs of these settings (device aside)."""
    runs = atlas.load("cpu").runs(config.replace(device=FineTuneConfig().device))
    kept = [r.kept["validation_accuracy"] for r in runs if "validation_accuracy" in r.kept]
    return {"seeds": len(kept), "low": min(kept) if kept else None, "high": max(kept) if kept else None}


def estimated_bytes(run) -> float | None:
    """memory.estimate for a decoder LLM run (its model's shape, LoRA on the top blocks, the largest batch)."""
    language_model = getattr(run.model, "lm", None)  # an LLM run's `run.model` scores labels with its `.lm`
    if language_model is None or run.config.lora_r == 0:
        return None
    from lmtune_widgets.memory import estimate, shape_of

    config, shape = run.config, shape_of(language_model)
    bill = estimate(shape, "lora", "fp32", batch_size=config.per_device_train_batch_size,
                    seq_len=config.max_length, trained_layers=shape.layers - config.freeze_layers,
                    lora_r=config.lora_r, lora_targets=tuple(config.lora_target_modules))
    return bill.total


def check(name: str, config: FineTuneConfig, capability, cuda: bool) -> dict:
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    with reported_capability(capability):
        run = fine_tune(config)
    seconds = time.perf_counter() - t
    band = recorded_band(config)
    accuracy = run.kept.get("validation_accuracy", math.nan)
    inside = None if band["seeds"] == 0 else band["low"] <= accuracy <= band["high"]
    estimate = estimated_bytes(run)
    peak = torch.cuda.max_memory_allocated() if cuda else None
    return {"case": name, "status": run.status, "precision": run.meta["precision"], "device": run.meta["processor"],
            "skipped_steps": run.meta.get("skipped_steps", 0), "seconds": round(seconds, 2),
            "train_eval_s": round(run.meta["train_s"] + run.meta["finish_s"], 2),
            "kept_accuracy": round(accuracy, 4), "band": band, "inside_band": inside,
            "peak_gb": None if peak is None else round(peak / 1e9, 3),
            "estimate_gb": None if estimate is None else round(estimate / 1e9, 3)}


def main() -> None:
    arguments = parser(__doc__)
    arguments.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    args = arguments.parse_args()
    from transformers.utils import logging

    logging.set_verbosity_error()  # no load reports or progress bars between the figures
    logging.disable_progress_bar()
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here: run with --device cpu --smoke for the smoke test")
    load_before = load_average()
    results = {}
    for key, name, config, capability in cases(args.device, args.smoke):
        results[key] = check(name, config, capability, cuda)
        print(json.dumps(results[key]), flush=True)
    print()
    print(f"{'case':28s} {'precision':9s} {'s':>7s} {'kept':>6s} {'recorded CPU band':>22s} {'peak GB':>8s} {'est. GB':>8s}")
    for r in results.values():
        band = r["band"]
        shown = (f"{band['low']:.3f}-{band['high']:.3f} ({band['seeds']} seeds)" if band["seeds"] else "not recorded")
        where = "" if r["inside_band"] is None else (" in" if r["inside_band"] else " OUT")
        print(f"{r['case']:28s} {r['precision']:9s} {r['seconds']:7.1f} {r['kept_accuracy']:6.3f} {shown:>22s}{where:4s}"
              f" {r['peak_gb'] if r['peak_gb'] is not None else '-':>8} {r['estimate_gb'] if r['estimate_gb'] is not None else '-':>8}")
    native, half, llm = results["minilm_native"], results["minilm_fp16_as_t4"], results["llm_lora"]
    ratios = {"fp16_over_native_train_eval_s": round(half["train_eval_s"] / native["train_eval_s"], 3),
              "llm_peak_over_estimate": (round(llm["peak_gb"] / llm["estimate_gb"], 3)
                                         if llm["peak_gb"] and llm["estimate_gb"] else None)}
    print(f"float16 (T4 path) / native precision, training + evaluation: {ratios['fp16_over_native_train_eval_s']}x")
    gpu = torch.cuda.get_device_name(0) if cuda else None
    write("gpu_check", args, {k: {f: v for f, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
                              for k, r in results.items()}, ratios, load_before, cases=results,
          settings={"device": args.device, "gpu": gpu,
                    "capability": list(torch.cuda.get_device_capability(0)) if cuda else None})


if __name__ == "__main__":
    main()
