"""What the peer scripts share: the median of repeated runs, and a network's name from its file."""

import os
import time


def median_seconds(run, budget):
    """Median wall time of `run()` after one warm-up call: at least 3 runs, more until `budget` seconds (at most
    100). Returns (median seconds, runs timed)."""
    run()
    times, started = [], time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - started < budget and len(times) < 100):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2], len(times)


def stem(path):
    """The network's name: the file's stem, or its folder's name for tests/fixtures/NAME/model.onnx."""
    name = os.path.splitext(os.path.basename(path))[0]
    return os.path.basename(os.path.dirname(path)) if name == "model" else name
