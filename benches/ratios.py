#!/usr/bin/env python3
"""Prints the ratios of the benchmarks measured by `cargo bench -p ecst-benches`
(`--bench decode_apply`, `--bench upcast`, `--bench nats`, `--bench outbox`), from criterion's
estimates of the last run
(target/criterion/<group>/<function>/new/estimates.json).

Time ratios (`time`) divide the mean times: lower is better, the target is a
maximum. Rate ratios (`rate`, the NATS groups) divide the events per second,
ecst over raw async-nats: higher is better, the target is a minimum.

Usage: python3 benches/ratios.py [criterion dir]
"""

import json
import os
import sys

# (group, numerator, denominator, target or None[, kind]); kind is "time"
# (the default) or "rate".
RATIOS = [
    ("decode_apply", "ecst_replica", "serde_envelope_str_hashmap", 0.8),
    ("decode_apply", "ecst_replica", "serde_envelope_hashmap", None),
    ("decode_apply", "ecst_replica", "cloudevents_sdk_hashmap", None),
    ("decode_apply", "ecst_replica", "serde_payload_hashmap", None),
    ("decode_apply", "serde_envelope_hashmap", "serde_payload_hashmap", None),
    ("upcast", "v1_upcast", "v3_direct", 1.1),
    ("upcast", "v1_upcast", "v1_obake_upcast", None),
    ("upcast", "v1_upcast", "v1_value_upcast", None),
    ("catch_up", "ecst_memory", "raw_ack", 0.9, "rate"),
    ("catch_up", "ecst_sqlite_normal", "raw_ack", 0.8, "rate"),
    ("catch_up", "ecst_memory_typed", "raw_ack", None, "rate"),
    ("catch_up", "ecst_postgres", "raw_ack", None, "rate"),
    ("catch_up", "raw_ack_all", "raw_ack", None, "rate"),
    ("catch_up", "ecst_sqlite_full", "raw_ack", None, "rate"),
    ("catch_up", "raw_ack_last_per_subject", "raw_ack", None, "rate"),
    ("catch_up", "ecst_memory", "raw_ack_last_per_subject", None, "rate"),
    ("publish", "ecst", "raw", None, "rate"),
    ("outbox_sqlite", "outbox", "direct", 0.7, "rate"),
    ("outbox_postgres", "outbox", "direct", None, "rate"),
]


def default_dir():
    target = os.environ.get("CARGO_TARGET_DIR")
    if not target:
        target = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target")
    return os.path.join(target, "criterion")


def estimates(root, group, function):
    path = os.path.join(root, group, function, "new", "estimates.json")
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    # Flat sampling has no slope; linear sampling's slope is what criterion
    # prints as `time`.
    slope = (data.get("slope") or {}).get("point_estimate")
    return data["mean"]["point_estimate"], data["median"]["point_estimate"], slope, elements(path)


def elements(estimates_path):
    """The elements (events) per iteration, if the benchmark declared them."""
    path = os.path.join(os.path.dirname(estimates_path), "benchmark.json")
    try:
        with open(path) as f:
            throughput = json.load(f).get("throughput") or {}
    except FileNotFoundError:
        return None
    return throughput.get("Elements")


def human(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3f} {unit}"
    return f"{ns:.1f} ns"


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else default_dir()
    shown = set()
    for group, num, den, target, *rest in RATIOS:
        kind = rest[0] if rest else "time"
        a = estimates(root, group, num)
        b = estimates(root, group, den)
        if a is None or b is None:
            continue
        for name, est in ((num, a), (den, b)):
            if (group, name) not in shown:
                shown.add((group, name))
                slope = f", slope {human(est[2])}" if est[2] else ""
                rate = f", {est[3] / est[0] * 1e9:,.0f} events/s (mean)" if est[3] else ""
                print(f"{group}/{name}: mean {human(est[0])}, median {human(est[1])}{slope}{rate}")
        if kind == "rate":
            # Events per second of the numerator over the denominator's:
            # the inverse of the time ratio.
            mean, median = b[0] / a[0], b[1] / a[1]
            slope = f", {b[2] / a[2]:.3f} (slope)" if a[2] and b[2] else ""
            verdict = ""
            if target is not None:
                verdict = f"  target >= {target}: {'met' if mean >= target else 'MISSED'}"
            print(f"  {group}: rate {num} / {den} = {mean:.3f} (mean), {median:.3f} (median){slope}{verdict}")
            continue
        mean, median = a[0] / b[0], a[1] / b[1]
        verdict = ""
        if target is not None:
            verdict = f"  target <= {target}: {'met' if mean <= target else 'MISSED'}"
        slope = f", {a[2] / b[2]:.3f} (slope)" if a[2] and b[2] else ""
        print(f"  {group}: {num} / {den} = {mean:.3f} (mean), {median:.3f} (median){slope}{verdict}")
    if not shown:
        print(f"no estimates under {root}; run `cargo bench` first", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
