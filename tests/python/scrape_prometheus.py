"""Scrapes a framerec Prometheus endpoint and parses it with the official prometheus_client
parser. Prints JSON: metric families, and per histogram its count, +Inf bucket and whether its
buckets are cumulative. Exits 1 if the text does not parse.

usage: scrape_prometheus.py URL
"""
import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def main():
    text = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode()
    families = {}
    histograms = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = family.type
        if family.type != "histogram":
            continue
        buckets = [(s.labels["le"], s.value) for s in family.samples if s.name.endswith("_bucket")]
        count = next(s.value for s in family.samples if s.name.endswith("_count"))
        values = [v for _, v in buckets]
        histograms[family.name] = {
            "count": count,
            "inf": dict(buckets)["+Inf"],
            "cumulative": all(a <= b for a, b in zip(values, values[1:])),
        }
    print(json.dumps({"families": families, "histograms": histograms}))


if __name__ == "__main__":
    main()
