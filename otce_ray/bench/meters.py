"""What the benchmarks measure besides seconds: peak memory of a block (host or card) and the card's utilisation."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
from typing import Callable

UTILISATION_INTERVAL_MS = 200


def status_kib(field: str, path: str = "/proc/self/status") -> int:
    """A ``kB`` field of a /proc status file (VmRSS, VmHWM, MemAvailable...)."""
    with open(path) as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in {path}")


def peak_meter(device: str) -> Callable[[], float]:
    """Start measuring peak memory on ``device``; the returned function gives the MiB used above the start.

    On CUDA: the card's peak allocation by torch in this process. On CPU: the process's peak resident size
    (VmHWM, reset to the current size here), so a measured block should run in a process of its own.
    """
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        return lambda: (torch.cuda.max_memory_allocated() - base) / 2**20
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # resets VmHWM to the current resident size
    base = status_kib("VmRSS")
    return lambda: (status_kib("VmHWM") - base) / 1024


class GpuUtilisation:
    """The card's utilisation sampled by ``nvidia-smi`` every UTILISATION_INTERVAL_MS while a ``with`` block runs.

    ``summary`` says what was seen (mean and max percent, samples) or why nothing was ("n/a (no nvidia-smi)"). The
    card sampled is the first of CUDA_VISIBLE_DEVICES (index or UUID), else card 0: the one torch calls cuda:0.
    """

    def __init__(self) -> None:
        self.summary = "n/a (no nvidia-smi)"
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> GpuUtilisation:
        executable = shutil.which("nvidia-smi")
        if executable is not None:
            card = (os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0].strip() or "0"
            self._process = subprocess.Popen(
                [executable, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                 f"--loop-ms={UTILISATION_INTERVAL_MS}", "-i", card],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process is None:
            return
        self._process.terminate()
        output, _ = self._process.communicate(timeout=10)
        samples = [float(line) for line in output.split() if line.strip().isdigit()]
        self.summary = (f"mean {statistics.mean(samples):.0f}%, max {max(samples):.0f}% ({len(samples)} samples)"
                        if samples else "n/a (nvidia-smi gave no samples)")
