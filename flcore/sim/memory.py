"""Process-wide memory settings that make the CPU kernels faster; no number changes.

:func:`tune` is called explicitly, never at import: by the command line before torch is
imported (``python -m flcore``), and at the start of every simulation.
"""
from __future__ import annotations

import os


def tune() -> None:
    """Transparent huge pages for large CPU tensors, and freed memory kept in the process.

    ``THP_MEM_ALLOC_ENABLE=1`` lets torch put large CPU tensors on transparent huge pages; torch
    reads it once when it starts, so it acts only when set before torch is imported (the command
    line; ``make`` exports it). Evaluation batches of 1,000 images allocate ~50 MB of activations;
    with 4 KiB pages each is page-faulted afresh.

    glibc serves allocations above a threshold with ``mmap`` and hands them back on free, so every
    activation tensor of every SGD step is page-faulted and zeroed afresh; element-wise kernels
    (ReLU backward, copies) then run several times slower than memory allows (measured with
    ``torch.profiler``: 20-25 % of a step of the PoisonedFL network). Raising the mmap and trim
    thresholds (``mallopt``) keeps the memory in the heap for reuse; the process keeps its peak
    memory. ``FLCORE_MALLOC=system`` leaves glibc's defaults. Calling it again changes nothing.
    """
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    if os.environ.get("FLCORE_MALLOC", "") == "system":
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 512 << 20)
        libc.mallopt(m_trim_threshold, 2 << 30)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass
