// Charts of the usage pages, drawn by the vendored Chart.js from the JSON the server put in
// the page (json_script). Times arrive already in the viewer's zone, as ISO text.
(function () {
  var series = JSON.parse(document.getElementById("series-data").textContent);
  var mix = JSON.parse(document.getElementById("status-data").textContent);
  var labels = series.map(function (p) { return p.t.slice(0, 16).replace("T", " "); });
  function pick(name, scale) {
    return series.map(function (p) { return p[name] === null ? null : p[name] * (scale || 1); });
  }
  var common = { animation: false, elements: { point: { radius: series.length > 60 ? 0 : 2 } }, responsive: true, maintainAspectRatio: false, spanGaps: true,
    interaction: { mode: "index", intersect: false }, scales: { x: { ticks: { maxTicksLimit: 8 } } } };
  function line(id, datasets, extra) {
    var canvas = document.getElementById(id);
    if (!canvas) return;
    var options = Object.assign({}, common, extra || {});
    window.porticoCharts = window.porticoCharts || {};
    window.porticoCharts[id] = new Chart(canvas, { type: "line", data: { labels: labels, datasets: datasets }, options: options });
  }
  line("chart-requests", [{ label: "Requests", data: pick("requests"), borderColor: "#3b5bdb", fill: false }]);
  line("chart-errors", [{ label: "Error rate (%)", data: pick("error_rate", 100), borderColor: "#c92a2a" }]);
  line("chart-latency", [
    { label: "p50 (ms)", data: pick("p50_ms"), borderColor: "#2b8a3e" },
    { label: "p95 (ms)", data: pick("p95_ms"), borderColor: "#e67700" },
    { label: "p99 (ms)", data: pick("p99_ms"), borderColor: "#c92a2a" }
  ]);
  line("chart-tokens", [
    { label: "Tokens", data: pick("tokens"), borderColor: "#7048e8", yAxisID: "y" },
    { label: "Cost ($)", data: pick("cost"), borderColor: "#0b7285", yAxisID: "cost" }
  ], { scales: { x: common.scales.x, y: { position: "left" }, cost: { position: "right", grid: { drawOnChartArea: false } } } });
  var status = document.getElementById("chart-status");
  if (status) {
    var names = Object.keys(mix);
    var colours = { "1xx": "#868e96", "2xx": "#2b8a3e", "3xx": "#1c7ed6", "4xx": "#e67700", "5xx": "#c92a2a", other: "#495057" };
    window.porticoCharts["chart-status"] = new Chart(status, {
      type: "doughnut",
      data: { labels: names, datasets: [{ data: names.map(function (n) { return mix[n]; }),
        backgroundColor: names.map(function (n) { return colours[n] || "#495057"; }) }] },
      options: { animation: false, responsive: true, maintainAspectRatio: false }
    });
  }
})();
