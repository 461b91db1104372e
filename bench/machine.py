"""What a benchmark report says about the machine it ran on (shared by the bench scripts).

Benchmarks here run on shared machines, so every report names the CPU, the core count, the
memory and the load average at the start and end of the run; see BENCHMARKS.md.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else ``platform.processor()`` or
    the architecture (e.g. ``"x86_64"``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """One line: ``"<n> CPUs (<model>), <GiB> GiB RAM, <OS> <release>"``."""
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} CPUs ({cpu_model()}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}"


def load_avg() -> str:
    """The 1/5/15-minute load averages as ``"a/b/c"`` (two decimals)."""
    return "/".join(f"{v:.2f}" for v in os.getloadavg())
