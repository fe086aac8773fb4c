// The household page: draws the 24 h chart with uPlot and follows the server's SSE stream.
// No polling: EventSource keeps one connection and reconnects by itself.
"use strict";
(function () {
  const snap = JSON.parse(document.getElementById("snapshot").textContent);
  const $ = (id) => document.getElementById(id);
  const fmtTime = (ts) => new Date(ts * 1000).toLocaleString();
  document.querySelectorAll("time[data-ts]").forEach((el) => { el.textContent = fmtTime(Number(el.dataset.ts)); });
  if (snap.live) { $("ts").textContent = fmtTime(snap.live.ts); }

  function drawChart() {
    const el = $("chart");
    if (typeof uPlot === "undefined" || !el) { return; }
    const s = snap.series;
    const xs = [], actual = [], forecast = [];
    s.actual.forEach((v, i) => { xs.push(s.start + i * s.step); actual.push(v); forecast.push(null); });
    s.forecast.forEach((v, i) => { xs.push(s.forecast_start + i * s.step); actual.push(null); forecast.push(v); });
    const width = () => Math.max(280, el.clientWidth);
    const plot = new uPlot({
      width: width(), height: 240,
      series: [{}, { label: "measured W", stroke: "#0b5394", width: 2 },
                   { label: "forecast W", stroke: "#b45f06", width: 2, dash: [6, 4] }],
      axes: [{}, { label: "W" }],
    }, [xs, actual, forecast], el);
    window.addEventListener("resize", () => plot.setSize({ width: width(), height: 240 }));
  }
  drawChart();

  const link = $("link");
  const source = new EventSource(location.pathname + "/events");
  source.addEventListener("open", () => { link.textContent = "live"; });
  source.addEventListener("error", () => { link.textContent = "reconnecting…"; });
  source.addEventListener("reading", (ev) => {
    const d = JSON.parse(ev.data);
    $("power").textContent = d.power_w === null ? "–" : d.power_w;
    $("seq").textContent = d.seq;
    $("ts").textContent = fmtTime(d.ts);
    $("imp").textContent = d.import_today_wh;
    $("exp").textContent = d.export_today_wh;
    $("complete").textContent = d.complete ? "" : "Gaps in today's readings: figures are partial.";
    document.body.dataset.lastSeq = String(d.seq);
  });
})();
