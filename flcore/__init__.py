"""flcore: a compact federated-learning simulation core for the LeadFL and PoisonedFL/ProDiGy report."""

__version__ = "0.1.0"

import os

# Let torch put large CPU tensors on transparent huge pages (read once when torch
# starts, so it acts when flcore is imported first: the CLI, the tests). Evaluation
# batches of 1,000 images allocate ~50 MB of activations; with 4 KiB pages each is
# page-faulted afresh. No number changes.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


def _keep_freed_memory() -> None:
    """Keep freed tensor memory in the process (glibc ``mallopt``).

    glibc serves allocations above a threshold with ``mmap`` and hands them back on
    free, so every activation tensor of every SGD step is page-faulted and zeroed
    afresh; element-wise kernels (ReLU backward, copies) then run several times
    slower than memory allows (measured with ``torch.profiler``: 20-25 % of a step
    of the PoisonedFL network). Raising the mmap and trim thresholds keeps the
    memory in the heap for reuse. The process keeps its peak memory; no number
    changes. ``FLCORE_MALLOC=system`` leaves glibc's defaults.
    """
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


_keep_freed_memory()
