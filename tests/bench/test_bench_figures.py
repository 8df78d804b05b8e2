"""The benchmark reads wrk's report and its own latencies correctly (no performance assertions)."""

from bench.load import median_row, parse_wrk, percentile

WRK_REPORT = """Running 10s test @ http://127.0.0.1:40000/bench/x
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    15.20ms    8.01ms  98.00ms   80.00%
    Req/Sec     2.08k   150.00     2.40k    70.00%
  Latency Distribution
     50%   14.79ms
     75%   18.00ms
     90%   24.00ms
     99%  1.20s
  41310 requests in 10.00s, 6.00MB read
  Non-2xx or 3xx responses: 12
Requests/sec:   4131.00
Transfer/sec:    614.00KB
"""


def test_wrk_report_gives_rate_percentiles_in_ms_and_errors():
    figures = parse_wrk(WRK_REPORT)
    assert figures["rps"] == 4131.0
    assert figures["p50_ms"] == 14.79
    assert figures["p99_ms"] == 1200.0
    assert figures["non_2xx"] == 12
    assert figures["socket_errors"] == ""


def test_wrk_report_in_microseconds_and_with_socket_errors():
    report = WRK_REPORT.replace("14.79ms", "552.00us").replace(
        "  Non-2xx or 3xx responses: 12\n", "  Socket errors: connect 0, read 3, write 0, timeout 0\n"
    )
    figures = parse_wrk(report)
    assert figures["p50_ms"] == 0.552
    assert figures["non_2xx"] == 0
    assert "read 3" in figures["socket_errors"]


def test_percentile_is_taken_from_the_sorted_sample():
    latencies = [float(n) for n in range(100, 0, -1)]
    assert percentile(latencies, 0.50) == 51.0
    assert percentile(latencies, 0.99) == 100.0


def test_rounds_of_a_target_are_summarised_by_their_medians_and_summed_errors():
    rows = [
        {"rps": 100.0, "p50_ms": 1.0, "p99_ms": 9.0, "non_2xx": 0, "socket_errors": ""},
        {"rps": 300.0, "p50_ms": 3.0, "p99_ms": 5.0, "non_2xx": 2, "socket_errors": "Socket errors: read 1"},
        {"rps": 200.0, "p50_ms": 2.0, "p99_ms": 7.0, "non_2xx": 1, "socket_errors": ""},
    ]
    row = median_row(rows)
    assert (row["rps"], row["p50_ms"], row["p99_ms"]) == (200.0, 2.0, 7.0)
    assert row["non_2xx"] == 3 and row["socket_errors"] == "Socket errors: read 1"
