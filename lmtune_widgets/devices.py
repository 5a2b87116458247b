"""Where a run trains and in what precision, and what a recorded run must say about the machine it ran on.

    from lmtune_widgets.devices import pick_device, pick_precision
    device = pick_device("auto")                 # a CUDA GPU when there is one, else the CPU
    dtype = pick_precision(device.type)          # bfloat16 on A100/H100-class GPUs, float16 on a T4, None on a CPU

A recorded run is reproduced bit for bit only on the same kind of machine: `machine_facts` is what a run's meta
says about it (device, precision, threads, processor and chip, torch and transformers versions). Two CPUs that
report the same name ("AMD EPYC") can round differently: the chip (family, model and the vector unit torch
dispatches to) tells them apart.
"""
from __future__ import annotations

import contextlib
import platform
from functools import lru_cache
from typing import Any

import torch


# --------------------------------------------------------------------------------------------- devices, precision
def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' is not valid here: no CUDA GPU is available; use 'auto' or 'cpu'")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device='mps' is not valid here: no Apple GPU is available; use 'auto' or 'cpu'")
    return torch.device(name)


def pick_precision(device_type: str, capability: tuple[int, int] | None = None) -> torch.dtype | None:
    """The autocast dtype for a device: bfloat16 on GPUs that have it natively (compute capability 8.0 and up:
    A100, H100, RTX 30xx/40xx), float16 on older ones (a Colab T4 is 7.5; `torch.cuda.is_bf16_supported()`
    also counts slow emulation), and None (plain float32) on CPUs and Apple GPUs."""
    if device_type != "cuda":
        return None
    if capability is None:
        capability = torch.cuda.get_device_capability()
    return torch.bfloat16 if capability >= (8, 0) else torch.float16


def autocast_for(device: torch.device, dtype: torch.dtype | None):
    """One mixed-precision context per run, entered at every forward pass (a no-op in float32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def machine_facts(device: torch.device, dtype: torch.dtype | None) -> dict[str, Any]:
    """Where and how a run ran: a recorded run is only reproduced bit for bit on the same kind."""
    import transformers

    from . import __version__

    return {"device": str(device), "precision": str(dtype or torch.float32).replace("torch.", ""),
            "threads": torch.get_num_threads(), "processor": processor(device),
            "chip": chip(device), "torch": torch.__version__,
            "transformers": transformers.__version__, "kit": __version__}


@lru_cache(maxsize=None)
def processor(device: torch.device) -> str:
    """The chip a run ran on: the GPU's name, or the CPU's model name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


@lru_cache(maxsize=None)
def chip(device: torch.device) -> str:
    """What decides a run's rounding beyond the processor's name: a GPU's compute capability ("sm_90"), or a
    CPU's family and model with the vector instructions torch uses ("family 6 model 167, AVX512")."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"sm_{major}{minor}"
    if device.type != "cpu":
        return device.type
    facts = {}
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            if key.strip() in ("cpu family", "model") and key.strip() not in facts:
                facts[key.strip()] = value.strip()
            if len(facts) == 2:
                break
    except OSError:
        pass
    where = f"family {facts['cpu family']} model {facts['model']}, " if len(facts) == 2 else ""
    return where + torch.backends.cpu.get_cpu_capability()


def same_machine_kind(meta: dict[str, Any]) -> bool:
    """Whether a run recorded with this meta should reproduce here to the last stored digit: the same torch,
    processor and chip (runs recorded before the chip was noted are judged on the processor's name)."""
    here = torch.device(meta.get("device", "cpu"))
    if here.type == "cuda" and not torch.cuda.is_available():
        return False
    return (meta.get("torch") == torch.__version__ and meta.get("processor") == processor(here)
            and meta.get("chip", chip(here)) == chip(here))


def cpu_name() -> str:
    """The CPU's model name as the system reports it ("AMD EPYC", "Intel(R) Xeon(R) Processor")."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
