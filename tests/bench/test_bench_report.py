"""The benchmark's summary and report: Portico against nginx with 1 worker and with as many
workers as the gateway, each ratio the median of per-round ratios (no performance assertions)."""

from bench.load import median_row
from bench.run import reference_workers, report, summarise


def row(rps: float, p50: float = 1.0, p99: float = 2.0) -> dict:
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "non_2xx": 0, "socket_errors": ""}


def results_for(rounds: dict) -> dict:
    return {
        "rounds": {name: [row(rps) for rps in values] for name, values in rounds.items()},
        "throughput": {name: median_row([row(rps) for rps in values]) for name, values in rounds.items()},
        "fixed_rate": {"direct": {"p50_ms": 0.5, "p99_ms": 1.0}, "portico": {"p50_ms": 0.9, "p99_ms": 2.5}},
    }


ROUNDS = {
    "direct": [100_000, 100_000, 100_000],
    "nginx-1w": [50_000, 40_000, 60_000],
    "nginx-2w": [60_000, 70_000, 50_000],
    "bare-asgi": [40_000, 40_000, 40_000],
    "portico": [16_000, 14_000, 18_000],
}


def render(results: dict, summary: dict) -> str:
    return report(results, summary, connections=64, rounds=3, seconds=5, rate_seconds=10)


def test_references_are_one_worker_and_as_many_as_the_gateway():
    assert reference_workers(2) == [1, 2]
    assert reference_workers(4) == [1, 4]
    assert reference_workers(1) == [1]  # one row when they coincide


def test_each_ratio_is_the_median_of_the_rounds_ratios():
    results = results_for(ROUNDS)
    ratios = summarise(results, gateway_workers=2, rate=1000)["portico_over_nginx_rps"]
    assert ratios["nginx-1w"] == {"workers": 1, "median": 0.32, "by_round": [0.32, 0.35, 0.3]}
    # Per round 0.267, 0.2, 0.36: the median is 0.267, not 16k / 60k (the medians' ratio).
    assert ratios["nginx-2w"] == {"workers": 2, "median": 0.267, "by_round": [0.267, 0.2, 0.36]}


def test_report_shows_both_references_with_rounds_and_verdicts():
    results = results_for(ROUNDS)
    text = render(results, summarise(results, gateway_workers=2, rate=1000))
    header = next(line for line in text.splitlines() if line.startswith("target"))
    assert header.split()[-4:] == ["x", "nginx-1w", "x", "nginx-2w"]
    portico = next(line for line in text.splitlines() if line.startswith("portico "))
    assert portico.split()[-2:] == ["0.32", "0.27"]  # 16k against the 50k and 60k medians
    assert "Portico / nginx-1w requests/s: 0.32x, median of rounds 0.32, 0.35, 0.30   (target >= 0.30x: PASS)" in text
    assert "Portico / nginx-2w requests/s: 0.27x, median of rounds 0.27, 0.20, 0.36   (target >= 0.30x: FAIL)" in text
    assert "added latency at 1000 req/s: p50 +0.40 ms, p99 +1.50 ms (target p99 <= 3 ms: PASS)" in text


def test_a_one_worker_gateway_has_a_single_reference():
    rounds = {name: values for name, values in ROUNDS.items() if name != "nginx-2w"}
    results = results_for(rounds)
    text = render(results, summarise(results, gateway_workers=1, rate=1000))
    assert "nginx-1w requests/s" in text and "nginx-2w" not in text


def test_without_nginx_the_ratio_is_not_measured():
    rounds = {name: values for name, values in ROUNDS.items() if not name.startswith("nginx")}
    results = results_for(rounds)
    summary = summarise(results, gateway_workers=2, rate=1000)
    assert summary["portico_over_nginx_rps"] == {}
    text = render(results, summary)
    assert "no nginx reference" in text and "not measured" in text
    assert next(line for line in text.splitlines() if line.startswith("portico ")).split()[-1] == "-"
