"""The bundled LLM (SmolLM2-135M-Instruct, float32, CPU): peak memory and time of training steps for full
fine-tuning, unfrozen top blocks and LoRA, against `memory.estimate`.

    python benchmarks/bench_llm_memory.py                # full 30, top 10 (freeze) and lora 10, batch 8, 1 thread
    python benchmarks/bench_llm_memory.py lora 10 8      # one method: method, trained (top) blocks, batch size
    python benchmarks/bench_llm_memory.py --smoke        # lora in the top block, batch 1 (tests)

One method per process, so each starts from the same baseline. The baseline is the resident memory after
loading and one forward pass without gradients (kernels and thread pools set up: the model ready to run);
the peak is the kernel's high-water mark (VmHWM, reset through /proc/self/clear_refs) over 3 training steps
of real instruction sequences (AdamW, batch of the given size). The estimate it is compared with is
gradients + optimizer states + activations: the weights are already in the baseline. Linux only.
Results: benchmarks/results/bench_llm_memory.json (the ratio: the estimate over the measured rise, per method).
"""
import argparse
import contextlib
import gc
import json
import subprocess
import sys
import time

import torch

import _results
from lmtune_widgets import FineTuneConfig
from lmtune_widgets.data import load_splits
from lmtune_widgets.llm import Instructions, add_lora, answer_logprobs, load_causal_lm
from lmtune_widgets.memory import estimate, shape_of
from lmtune_widgets.models import freeze_bottom
from lmtune_widgets.training import optimizer_groups

STEPS = 3
METHODS = [("full", 30), ("freeze", 10), ("lora", 10)]


def resident(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def main(method: str, trained: int, batch: int, threads: int = 1) -> dict:
    torch.set_num_threads(threads)
    model, tokenizer = load_causal_lm("smollm2")
    model.train()
    if method == "lora":
        model = add_lora(model, FineTuneConfig(lora_r=8, freeze_layers=30 - trained), 30)
    else:
        freeze_bottom(model, 30 - trained)
    splits = load_splits("sentiment")
    instructions = Instructions.make(tokenizer, splits.label_names)
    messages = tokenizer(splits.train["text"][: batch * STEPS], add_special_tokens=False, truncation=True,
                         max_length=96).input_ids
    sequences = instructions.sequences(messages, splits.train["label"][: batch * STEPS], candidates=False)
    pad, cpu, plain = tokenizer.pad_token_id, torch.device("cpu"), contextlib.nullcontext()
    optimizer = torch.optim.AdamW(optimizer_groups(model, 0.0), lr=1e-5)
    with torch.no_grad():
        answer_logprobs(model, sequences[:batch], [1] * batch, pad, cpu, plain)
    gc.collect()
    baseline = resident("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the high-water mark starts again from here
    widths, seconds = [], []
    for step in range(STEPS):
        ids = sequences[step * batch:(step + 1) * batch]
        widths.append(max(map(len, ids)))
        t = time.perf_counter()
        logprobs, _ = answer_logprobs(model, ids, [1] * batch, pad, cpu, plain)
        (-logprobs.mean()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        seconds.append(time.perf_counter() - t)
    peak = resident("VmHWM")
    bill = estimate(shape_of(model), method, "fp32", batch_size=batch, seq_len=max(widths), trained_layers=trained)
    estimated = bill.total - bill.bytes["weights"]
    return {"method": method, "trained_blocks": trained, "batch": batch, "padded_tokens": max(widths),
            "trainable": bill.trainable, "baseline_mb": round(baseline / 1e6),
            "measured_rise_mb": round((peak - baseline) / 1e6), "estimated_rise_mb": round(estimated / 1e6),
            "estimate_over_measured": round(estimated / (peak - baseline), 3),
            "s_per_step_after_first": round(sum(seconds[1:]) / (STEPS - 1), 2), "threads": threads}


def in_own_process(method: str, trained: int, batch: int, threads: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--one", method, str(trained), str(batch), str(threads)],
                          capture_output=True, text=True, env=_results.ENV, cwd=_results.ROOT)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def cli() -> None:
    parser = _results.parser(__doc__)
    parser.add_argument("method", nargs="?", help="full, freeze or lora (default: all three, one process each)")
    parser.add_argument("trained", nargs="?", type=int, default=10, help="trained (top) blocks (default 10)")
    parser.add_argument("batch", nargs="?", type=int, default=8, help="batch size (default 8)")
    parser.add_argument("threads", nargs="?", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # a child: one method, one JSON line
        print(json.dumps(main(args.method, args.trained, args.batch, args.threads)))
        return
    methods = [(args.method, 30 if args.method == "full" else args.trained)] if args.method else METHODS
    batch = args.batch
    if args.smoke:
        methods, batch = [("lora", 1)], 1
    before = _results.load_average()
    medians, ratios = {}, {}
    for method, trained in methods:
        found = in_own_process(method, trained, batch, args.threads)
        print(json.dumps(found), flush=True)
        medians[f"{method}_{trained}"] = found
        ratios[f"estimate_over_measured_{method}_{trained}"] = found["estimate_over_measured"]
    _results.write("bench_llm_memory", args, medians, ratios, before,
                   settings={"batch": batch, "threads": args.threads, "steps": STEPS})


if __name__ == "__main__":
    cli()
