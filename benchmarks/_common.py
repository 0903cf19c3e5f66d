"""What every benchmark script prints about the machine, and the allocator setting they share."""

from __future__ import annotations

import ctypes
import os
import platform
from pathlib import Path

import torch


def quiet_malloc() -> None:
    """Stop glibc from returning and re-faulting big activation buffers (see PERFORMANCE-NOTES)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def machine() -> str:
    """CPU model, CPU count, torch version and threads, python version: one line for the table header."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu} | {os.cpu_count()} CPUs | torch {torch.__version__} ({torch.get_num_threads()} threads) | "
            f"python {platform.python_version()}")


def load() -> str:
    """The 1/5/15-minute load average: a busy machine makes timings unreliable."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"
