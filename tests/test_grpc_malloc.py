"""colearn.grpc.malloc: chunk messages reuse heap memory instead of faulting fresh pages in for every message."""
import os
import platform
import subprocess
import sys

import pytest

pytest.importorskip("grpc")

STREAM_FAULTS = """
import resource
import numpy as np
from colearn.grpc import chunking
from colearn.grpc.malloc import tune_malloc
tuned = tune_malloc()
assert tune_malloc() == tuned  # once per process
weights = {"w": np.arange(1_000_000, dtype=np.float32)}  # 4 MB: a header and four 1 MiB chunk messages
for _ in range(3):
    for _ in chunking.weights_messages(weights, {}):
        pass
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    for _ in chunking.weights_messages(weights, {}):
        pass
print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def stream_page_faults(tuning: str) -> tuple[bool, int]:
    env = {**os.environ, "COLEARN_MALLOC_TUNING": tuning}
    out = subprocess.run([sys.executable, "-c", STREAM_FAULTS], env=env, capture_output=True, text=True, check=True)
    tuned, faults = out.stdout.split()
    return tuned == "True", int(faults)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the tuning applies to glibc's malloc only")
def test_tuned_malloc_streams_without_faulting_pages_in_for_every_message():
    tuned, faults = stream_page_faults("1")
    untuned, untuned_faults = stream_page_faults("0")
    assert tuned and not untuned
    # 20 streams of 4 MB: glibc's adaptive thresholds re-fault about 9600 pages; tuned, the heap is reused
    assert faults < 200 and faults < untuned_faults
