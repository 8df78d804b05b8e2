// The trend report's chart: requests and error rate hour by hour (UTC), the flagged hours
// drawn as red points, from the JSON the server put in the page (json_script).
(function () {
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var canvas = document.getElementById("chart-report-hourly");
  if (!canvas) return;
  var flagged = {};
  data.anomalies.forEach(function (a) { flagged[a.hour] = true; });
  var hours = data.hourly;
  var labels = hours.map(function (h) { return h.hour.slice(0, 16).replace("T", " "); });
  function colours(normal) {
    return hours.map(function (h) { return flagged[h.hour] ? "#c92a2a" : normal; });
  }
  function radii(normal) {
    return hours.map(function (h) { return flagged[h.hour] ? 6 : normal; });
  }
  window.porticoCharts = window.porticoCharts || {};
  window.porticoCharts[canvas.id] = new Chart(canvas, {
    type: "line",
    data: {
      labels: labels,
      datasets: [
        { label: "Requests", data: hours.map(function (h) { return h.requests; }), borderColor: "#3b5bdb", yAxisID: "y",
          pointBackgroundColor: colours("#3b5bdb"), pointBorderColor: colours("#3b5bdb"), pointRadius: radii(hours.length > 48 ? 0 : 2) },
        { label: "Error rate (%)", data: hours.map(function (h) { return h.error_rate === null ? null : h.error_rate * 100; }),
          borderColor: "#e67700", yAxisID: "errors",
          pointBackgroundColor: colours("#e67700"), pointBorderColor: colours("#e67700"), pointRadius: radii(hours.length > 48 ? 0 : 2) }
      ]
    },
    options: {
      animation: false, responsive: true, maintainAspectRatio: false, spanGaps: true,
      interaction: { mode: "index", intersect: false },
      scales: { x: { ticks: { maxTicksLimit: 12 } }, y: { position: "left", beginAtZero: true },
        errors: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false } } },
      plugins: { tooltip: { callbacks: { footer: function (items) {
        return items.length && flagged[hours[items[0].dataIndex].hour] ? "Flagged as unusual" : "";
      } } } }
    }
  });
})();
