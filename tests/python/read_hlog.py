"""Reads framerec's HdrHistogram interval logs with the Python `hdrhistogram` package's
HistogramLogReader (an implementation independent of framerec's). Prints JSON: per tag, the
sample count and p50/p99/max (at rank ceil(q * n)) of all intervals merged, and the number of intervals.

usage: read_hlog.py DIR_OR_FILE
"""
import glob
import json
import math
import os
import sys

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader


def value_at_quantile(h, q):
    """The value at rank ceil(q * n), the rank HdrHistogram's Rust implementation uses; the
    Python package rounds q * n to the nearest integer instead, so ask it for that rank exactly."""
    n = h.get_total_count()
    rank = max(1, math.ceil(q * n))
    return h.get_value_at_percentile(100.0 * rank / n)


def main():
    path = sys.argv[1]
    logs = sorted(glob.glob(os.path.join(path, "*.hlog"))) if os.path.isdir(path) else [path]
    merged = {}
    intervals = {}
    for log in logs:
        reader = HistogramLogReader(log, HdrHistogram(1, 3_600_000_000_000, 3))
        while True:
            h = reader.get_next_interval_histogram()
            if h is None:
                break
            tag = h.get_tag()
            intervals[tag] = intervals.get(tag, 0) + 1
            if tag not in merged:
                merged[tag] = HdrHistogram(1, 3_600_000_000_000, 3)
            merged[tag].add(h)
    out = {
        tag: {
            "count": h.get_total_count(),
            "p50": value_at_quantile(h, 0.5),
            "p99": value_at_quantile(h, 0.99),
            "max": h.get_max_value(),
            "intervals": intervals[tag],
        }
        for tag, h in merged.items()
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
