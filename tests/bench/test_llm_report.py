"""The chat-completion benchmark's pure parts: the stream check, the wrk POST script, the
summary and its verdicts, the report (no performance assertions)."""

from pathlib import Path

from bench.llm import gateway_view, report, summarise
from bench.llm_streams import stream_problem
from bench.load import lua_string, median_row, post_script

CHUNK = b'data: {"choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":null}]}\n\n'
FINISH = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
DONE = b"data: [DONE]\n\n"


def test_a_complete_stream_has_no_problem():
    assert stream_problem(CHUNK % b"Hello" + CHUNK % b" there" + FINISH + DONE) is None
    assert stream_problem((CHUNK % b"Hi" + b": keep-alive\n\n" + FINISH + DONE).replace(b"\n", b"\r\n")) is None


def test_a_stream_without_done_or_cut_or_with_an_error_is_a_problem():
    assert stream_problem(CHUNK % b"Hello" + FINISH) == "no [DONE]"
    assert stream_problem(b"") == "empty stream"
    assert stream_problem(CHUNK % b"Hel" + b'data: {"choices": [{"delta": {"content": \n\n') == "event 1 is not JSON"
    error = b'data: {"error": {"message": "The provider\'s stream broke off", "type": "server_error"}}\n\n'
    assert stream_problem(CHUNK % b"Hello" + error) == "in-band error event"
    assert stream_problem(FINISH + DONE) == "no content before [DONE]"
    assert stream_problem(CHUNK % b"Hello" + DONE) == "no finish_reason before [DONE]"
    assert stream_problem(CHUNK % b"Hello" + FINISH + DONE + CHUNK % b"more") == "events after [DONE]"


def test_the_wrk_script_posts_the_body_verbatim(tmp_path):
    body = b'{"model":"m","messages":[{"role":"user","content":"a ]] b ]=] c"}]}'
    script = Path(post_script(tmp_path / "post.lua", body)).read_text()
    assert 'wrk.method = "POST"' in script
    assert f"wrk.body = [==[{body.decode()}]==]" in script
    assert 'wrk.headers["Content-Type"] = [[application/json]]' in script
    assert lua_string("plain") == "[[plain]]"


def row(rps: float) -> dict:
    return {"rps": rps, "p50_ms": 1.0, "p99_ms": 2.0, "non_2xx": 0, "socket_errors": ""}


def results_for(rounds: dict, *, streams_errored: int = 0) -> dict:
    return {
        "gateway_workers": 2,
        "litellm": {"spec": "litellm[proxy]==1.0", "version": "1.0", "workers": 2},
        "rounds": {name: [row(rps) for rps in values] for name, values in rounds.items()},
        "throughput": {name: median_row([row(rps) for rps in values]) for name, values in rounds.items()},
        "fixed_rate": {"direct": {"p50_ms": 0.5, "p99_ms": 1.0}, "portico": {"p50_ms": 0.9, "p99_ms": 2.0}},
        "ttfb": {
            "direct": {"p50_ms": 1.0, "p99_ms": 2.0, "n": 400},
            "portico": {"p50_ms": 2.5, "p99_ms": 6.0, "n": 400},
        },
        "streams": {
            "streams": 2000,
            "completed": 2000 - streams_errored,
            "errored": streams_errored,
            "error_kinds": {"ServerDisconnectedError": streams_errored} if streams_errored else {},
            "peak_open": 1990,
            "seconds": 2.5,
            "stream_seconds_p50": 1.4,
            "stream_seconds_max": 2.1,
        },
    }


ROUNDS = {"direct": [30_000, 30_000, 30_000], "portico": [6_000, 5_000, 7_000], "litellm": [200, 300, 250]}


def render(results: dict) -> str:
    return report(results, summarise(results, rate=1000), connections=64, rounds=3, seconds=5, rate_seconds=10)


def test_the_litellm_ratio_is_the_median_of_the_rounds_ratios_and_each_target_has_a_verdict():
    summary = summarise(results_for(ROUNDS), rate=1000)
    # Per round 30, 16.7 and 28: the median is 28, not 6k / 250 = 24 (the medians' ratio).
    assert summary["portico_over_litellm_rps"] == {"median": 28.0, "by_round": [30.0, 16.67, 28.0]}
    assert summary["added_p99_ms_at_rate"] == 1.0
    assert (summary["ttfb_added_p50_ms"], summary["ttfb_added_p99_ms"]) == (1.5, 4.0)
    assert summary["verdicts"] == {
        "portico_over_litellm_rps": "PASS",
        "added_p99_ms_at_rate": "PASS",
        "ttfb_added_p50_ms": "PASS",
        "concurrent_streams": "PASS",
    }


def test_report_prints_each_target_with_its_verdict():
    text = render(results_for(ROUNDS, streams_errored=3))
    assert "Portico / LiteLLM requests/s: 28.0x, median of rounds 30.0, 16.7, 28.0   (target >= 20x: PASS)" in text
    assert "added latency at 1000 req/s: p50 +0.40 ms, p99 +1.00 ms (target p99 <= 1.5 ms: PASS)" in text
    assert "streamed time to first byte added: p50 +1.50 ms, p99 +4.00 ms (target p50 <= 2 ms: PASS)" in text
    assert "2,000 concurrent streams on 2 gateway workers: 3 errors (target 0 errors, all complete: FAIL)" in text
    assert "errors: ServerDisconnectedError x3" in text
    assert "LiteLLM 1.0, 2 workers" in text
    assert "WARNING" not in text


def test_without_litellm_the_ratio_is_not_measured_and_the_reason_is_shown():
    results = results_for({name: values for name, values in ROUNDS.items() if name != "litellm"})
    results["litellm"] = {"spec": "litellm[proxy]", "skipped": "pip could not install litellm[proxy]"}
    summary = summarise(results, rate=1000)
    assert summary["portico_over_litellm_rps"] is None
    assert summary["verdicts"]["portico_over_litellm_rps"] == "not measured"
    text = render(results)
    assert "litellm     not measured: pip could not install litellm[proxy]" in text
    assert "(target >= 20x: not measured)" in text


def test_rows_with_errors_are_flagged():
    results = results_for(ROUNDS)
    results["throughput"]["litellm"]["non_2xx"] = 12
    assert "WARNING: litellm answered errors or dropped connections" in render(results)


def test_the_gateway_view_takes_percentiles_of_the_recorded_overhead_and_latency():
    records = [{"overhead_ms": float(n), "latency_ms": 10.0 + n} for n in range(1, 101)] + [{"status": 200}]
    assert gateway_view(records) == {
        "n": 100,
        "overhead_p50_ms": 51.0,
        "overhead_p99_ms": 100.0,
        "latency_p50_ms": 61.0,
        "latency_p99_ms": 110.0,
    }
    assert gateway_view([]) == {"n": 0}
