"""The PromQL reader the monitoring tests rely on: if it missed a name, a dashboard could
query a metric the gateway never exports and still pass."""

import pytest

from tests.ops.promql import PromQLSyntaxError, metric_names, selectors


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('up{job="portico-gateway"} == 0 or absent(up{job="portico-gateway"})', {"up"}),
        (
            "histogram_quantile(0.95, sum by (le) (rate(portico_gateway_request_duration_seconds_bucket[5m])))",
            {"portico_gateway_request_duration_seconds_bucket"},
        ),
        (
            'sum(rate(a_total{status=~"5.."}[$__rate_interval])) / sum(rate(b_total[5m])) > 1e-3',
            {"a_total", "b_total"},
        ),
        (
            "sum(rate(x_total[5m])) by (kind, le) * on (instance) group_left (version) info_metric",
            {"x_total", "info_metric"},
        ),
        ('sum by (class) (label_replace(rate(r_total[1m]), "class", "${1}xx", "status", "([1-5]).."))', {"r_total"}),
        ("deriv(sum(spool_bytes)[10m:1m]) > 0 and spool_bytes offset 1h > 0", {"spool_bytes"}),
        ('{__name__="by_name_total", kind="connect"}', {"by_name_total"}),
        ("max without (pid) (g) unless bool_gauge", {"g", "bool_gauge"}),
        ("count(x) # a comment naming not_a_metric", {"x"}),
    ],
)
def test_metric_names(expr, names):
    assert metric_names(expr) == names


def test_labels_matched_by_each_selector():
    found = selectors('sum(rate(a{status="429", kind!~"x|y"}[5m])) / b{store="spool"}')
    assert [(s.name, s.labels) for s in found] == [("a", {"status", "kind"}), ("b", {"store"})]


@pytest.mark.parametrize("expr", ["a{status=}", "a{status", '{kind="x"}', "a ? b"])
def test_unreadable_expressions_are_refused(expr):
    with pytest.raises(PromQLSyntaxError):
        selectors(expr)
