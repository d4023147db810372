"""How fast one destination is judged, for policies of 10, 1,000 and 10,000 host patterns.

A decision is what an interceptor does per request: ``peer_from_url(url)`` (cached on the
scheme and authority) and ``PatternIndex.lookup(peer)``. Each policy mixes exact names,
wildcards and CIDR networks (IPv4 /16 to /32 and IPv6 /32 to /128, disjoint); each is queried
with the same working set of 15 destinations: exact hits, wildcard hits several labels deep
and IP literals inside networks (one for each of the ten pattern kinds), and five misses, so
that only the size of the policy differs. Prints decisions per second (median of
several repetitions), the 10,000-vs-10 ratio (target: within 1.2x) and one JSON line.

Run: ``python benchmarks/matching.py`` (``--quick`` for fewer repetitions).
"""

from __future__ import annotations

import ipaddress
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pytest_outbound._hosts import HostPattern, PatternIndex, peer_from_url

SIZES = (10, 1_000, 10_000)
URLS_PER_POLICY = 1_000
SECONDS_PER_REPETITION = 0.3


def build_policy(size: int, rng: random.Random) -> tuple[list[str], list[str]]:
    """``size`` pattern texts (``size`` a multiple of 10) and the URLs to judge against them."""
    patterns: list[str] = []
    urls: list[str] = []
    for number in range(size):
        kind = number % 10
        if kind < 4:
            host = f"api{number}.service{number % 97}.example.com"
            patterns.append(host if kind else f"https://{host}")
            urls.append(f"https://{host}/v1/items?id={number}")
        elif kind < 7:
            suffix = f"tenant{number}.cdn.example.net"
            patterns.append(f"*.{suffix}")
            urls.append(f"https://a.b.c.{suffix}/asset.js")
        elif kind < 9:
            # each network in its own /16 (no overlaps: one match per hit), /16 to /32
            block = ipaddress.IPv4Address("11.0.0.0") + (number << 16)
            network = ipaddress.IPv4Network((block, rng.randint(16, 32)))
            patterns.append(str(network))
            inside = network.network_address + rng.randrange(network.num_addresses)
            urls.append(f"http://{inside}:8080/health")
        else:
            # each network in its own /32, /32 to /128
            block6 = ipaddress.IPv6Address("2a00::") + (number << 96)
            network6 = ipaddress.IPv6Network((block6, rng.randint(32, 128)))
            patterns.append(str(network6))
            urls.append(f"https://[{network6.network_address + 1}]/")
    misses = [
        "https://www.octopus.com/",
        "https://evil-example.com/",
        "https://deep.label.chain.of.names.example.org/",
        "http://203.0.113.7/",
        "http://[2001:db8::1]/",
    ]
    # Every policy is asked the same thing: 15 distinct destinations (one hit per pattern
    # kind, five misses), three quarters of the requests hits. Only the policy size varies.
    chosen = [rng.randrange(kind, size, 10) for kind in range(10)]
    hits = [urls[number] for number in chosen]
    sample = [hits[i % len(hits)] for i in range(URLS_PER_POLICY * 3 // 4)]
    sample += [misses[i % len(misses)] for i in range(URLS_PER_POLICY - len(sample))]
    rng.shuffle(sample)
    return patterns, sample


def decisions_per_second(index: PatternIndex[int], urls: list[str]) -> float:
    count = 0
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < SECONDS_PER_REPETITION:
        for url in urls:
            index.lookup(peer_from_url(url))
        count += len(urls)
        elapsed = time.perf_counter() - start
    return count / elapsed


def main() -> None:
    repetitions = 3 if "--quick" in sys.argv else 9
    rng = random.Random(20240601)
    policies: dict[int, tuple[PatternIndex[int], list[str]]] = {}
    for size in SIZES:
        texts, urls = build_policy(size, rng)
        index: PatternIndex[int] = PatternIndex()
        build_start = time.perf_counter()
        for number, text in enumerate(texts):
            index.add(HostPattern.parse(text), number)
        matched = sum(bool(index.lookup(peer_from_url(url))) for url in urls)  # warms caches
        build_seconds = time.perf_counter() - build_start
        policies[size] = (index, urls)
        print(
            f"{size:>6} patterns: index built in {build_seconds * 1000:.0f} ms, "
            f"{matched}/{len(urls)} requests match"
        )
    # Sizes take turns in every repetition, so that a change in machine load hits all alike.
    rates: dict[int, list[float]] = {size: [] for size in SIZES}
    for _ in range(repetitions):
        for size, (index, urls) in policies.items():
            rates[size].append(decisions_per_second(index, urls))
    results = {size: statistics.median(values) for size, values in rates.items()}
    for size, rate in results.items():
        print(f"{size:>6} patterns: {rate:>12,.0f} decisions/s (median of {repetitions})")
    ratio = results[SIZES[0]] / results[SIZES[-1]]
    verdict = "within" if ratio <= 1.2 else "OUTSIDE"
    print(f"time per decision, 10,000 vs 10 patterns: {ratio:.2f}x ({verdict} the 1.2x target)")
    print(
        json.dumps(
            {
                "benchmark": "matching",
                "decisions_per_second": {str(size): round(rate) for size, rate in results.items()},
                "ratio_10000_vs_10": round(ratio, 3),
                "repetitions": repetitions,
                "python": sys.version.split()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
