#!/usr/bin/env python3
"""Collects criterion's estimates (CRITERION_DIR/<group>/<bench>/new/estimates.json) into one
JSON object: bench → mean, median and the mean's 95 % interval, in nanoseconds."""
import glob
import json
import os
import sys

root = sys.argv[1]
out = {}
for est in sorted(glob.glob(os.path.join(root, "**", "new", "estimates.json"), recursive=True)):
    bench = os.path.relpath(os.path.dirname(os.path.dirname(est)), root)
    with open(est) as f:
        e = json.load(f)
    out[bench] = {
        "mean_ns": e["mean"]["point_estimate"],
        "median_ns": e["median"]["point_estimate"],
        "mean_ci95_ns": [e["mean"]["confidence_interval"]["lower_bound"],
                         e["mean"]["confidence_interval"]["upper_bound"]],
    }
print(json.dumps(out, indent=2))
