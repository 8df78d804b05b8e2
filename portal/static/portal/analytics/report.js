// The trend report's chart: requests, error rate and p95 latency hour by hour (UTC), from the
// JSON the server put in the page (json_script). An hour flagged for a metric is drawn as a
// large red point on that metric's line. p95 starts hidden (its legend entry shows it).
(function () {
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var canvas = document.getElementById("chart-report-hourly");
  if (!canvas) return;
  var flagged = { requests: {}, error_rate: {}, p95_latency_ms: {} };
  data.anomalies.forEach(function (a) { if (flagged[a.metric]) flagged[a.metric][a.hour] = true; });
  var hours = data.hourly;
  var labels = hours.map(function (h) { return h.hour.slice(0, 16).replace("T", " "); });
  var small = hours.length > 48 ? 0 : 2;
  function dataset(label, metric, values, colour, axis, hidden) {
    var marks = flagged[metric];
    return {
      label: label, data: values, borderColor: colour, yAxisID: axis, hidden: !!hidden,
      pointBackgroundColor: hours.map(function (h) { return marks[h.hour] ? "#c92a2a" : colour; }),
      pointBorderColor: hours.map(function (h) { return marks[h.hour] ? "#c92a2a" : colour; }),
      pointRadius: hours.map(function (h) { return marks[h.hour] ? 6 : small; })
    };
  }
  window.porticoCharts = window.porticoCharts || {};
  window.porticoCharts[canvas.id] = new Chart(canvas, {
    type: "line",
    data: {
      labels: labels,
      datasets: [
        dataset("Requests", "requests", hours.map(function (h) { return h.requests; }), "#3b5bdb", "y"),
        dataset("Error rate (%)", "error_rate",
          hours.map(function (h) { return h.error_rate === null ? null : h.error_rate * 100; }), "#e67700", "errors"),
        dataset("p95 (ms)", "p95_latency_ms", hours.map(function (h) { return h.p95_ms; }), "#2b8a3e", "latency", true)
      ]
    },
    options: {
      animation: false, responsive: true, maintainAspectRatio: false, spanGaps: true,
      interaction: { mode: "index", intersect: false },
      scales: {
        x: { ticks: { maxTicksLimit: 12 } },
        y: { position: "left", beginAtZero: true, title: { display: true, text: "requests" } },
        errors: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false }, title: { display: true, text: "error rate %" } },
        latency: { position: "right", beginAtZero: true, display: "auto", grid: { drawOnChartArea: false }, title: { display: true, text: "ms" } }
      },
      plugins: { tooltip: { callbacks: { footer: function (items) {
        if (!items.length) return "";
        var hour = hours[items[0].dataIndex].hour;
        var what = Object.keys(flagged).filter(function (m) { return flagged[m][hour]; });
        return what.length ? "Flagged: " + what.join(", ") : "";
      } } } }
    }
  });
})();
