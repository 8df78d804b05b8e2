// The time-zone select defaults to the browser's zone: when the page was asked for without
// one, pick the browser's and ask again with it (times are rendered by the server).
(function () {
  var select = document.getElementById("tz");
  if (!select || select.dataset.fromBrowser !== "yes") return;
  var zone;
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { return; }
  if (!zone || zone === select.value) return;
  var known = Array.prototype.some.call(select.options, function (o) { return o.value === zone; });
  if (!known) return;
  select.value = zone;
  var url = new URL(window.location.href);
  url.searchParams.set("tz", zone);
  window.location.replace(url.toString());
})();
