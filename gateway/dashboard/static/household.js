// The household page: the 24 h chart (uPlot), the agent's negotiations drawn against its concession
// curve (SVG), the schedule and the tokens; all follow the server's SSE stream. No polling: EventSource
// keeps one connection and reconnects by itself. Data goes into the page as text, never as HTML.
"use strict";
(function () {
  const snap = JSON.parse(document.getElementById("snapshot").textContent);
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const fmtTime = (ts) => new Date(ts * 1000).toLocaleString();
  const dash = (v) => (v === null || v === undefined ? "–" : String(v));
  const short = (a) => (a ? a.slice(0, 10) + "…" : "–");
  document.querySelectorAll("time[data-ts]").forEach((el) => { el.textContent = fmtTime(Number(el.dataset.ts)); });
  if (snap.live) { $("ts").textContent = fmtTime(snap.live.ts); }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined) { e.textContent = text; }
    if (cls) { e.className = cls; }
    return e;
  }
  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    Object.entries(attrs).forEach(([k, v]) => e.setAttribute(k, String(v)));
    return e;
  }
  function row(cells) {
    const tr = el("tr");
    cells.forEach((c) => {
      const td = el("td");
      if (c instanceof Node) { td.appendChild(c); } else { td.textContent = dash(c); }
      tr.appendChild(td);
    });
    return tr;
  }
  function timeEl(ts) { const t = el("time", fmtTime(ts)); t.dataset.ts = String(ts); return t; }

  function drawChart() {
    const box = $("chart");
    if (typeof uPlot === "undefined" || !box) { return; }
    const s = snap.series;
    const xs = [], actual = [], made = [], forecast = [];
    s.actual.forEach((v, i) => {
      xs.push(s.start + i * s.step); actual.push(v);
      made.push(s.forecast_made ? s.forecast_made[i] : null); forecast.push(null);
    });
    s.forecast.forEach((v, i) => { xs.push(s.forecast_start + i * s.step); actual.push(null); made.push(null); forecast.push(v); });
    const width = () => Math.max(280, box.clientWidth);
    const plot = new uPlot({
      width: width(), height: 240,
      series: [{}, { label: "measured W", stroke: "#0b5394", width: 2 },
                   { label: "forecast made beforehand W", stroke: "#6a329f", width: 1, dash: [2, 3] },
                   { label: "forecast W", stroke: "#b45f06", width: 2, dash: [6, 4] }],
      axes: [{}, { label: "W" }],
    }, [xs, actual, made, forecast], box);
    window.addEventListener("resize", () => plot.setSize({ width: width(), height: 240 }));
  }
  drawChart();

  // Eq. 1 of the concession curve: O_t = ip + (rp - ip) (t / dl)^(1 / cr), t clamped to [0, dl].
  const openTables = new Set();
  const concession = (c, t) => c.ip + (c.rp - c.ip) * Math.pow(Math.min(Math.max(t, 0), c.dl) / c.dl, 1 / c.cr);

  function sessionFigure(s) {
    const fig = el("figure", undefined, "session");
    fig.dataset.session = s.id;
    fig.dataset.outcome = s.outcome;
    const offers = s.offers.filter((o) => o.price !== null && o.round !== null);
    const rounds = Math.max(1, s.curve ? s.curve.dl : 1, ...offers.map((o) => o.round));
    const prices = offers.map((o) => o.price);
    if (s.curve) { prices.push(s.curve.ip, s.curve.rp); }
    const lo = Math.min(...prices, Infinity), hi = Math.max(...prices, -Infinity);
    const pad = Math.max(1, (hi - lo) * 0.1);
    const y0 = (isFinite(lo) ? lo : 0) - pad, y1 = (isFinite(hi) ? hi : 1) + pad;
    const W = 320, H = 150, L = 36, B = 20;
    const X = (t) => L + (t / rounds) * (W - L - 8);
    const Y = (p) => 6 + (1 - (p - y0) / (y1 - y0)) * (H - B - 6);
    const summary = `${s.role === "buyer" ? "Buying" : "Selling"} ${s.quantity_wh} Wh with ${s.peer}: ` +
      `${offers.length} offers, ${s.outcome}`;
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": summary, class: "neg" });
    chart.appendChild(svg("line", { x1: L, y1: H - B, x2: W - 4, y2: H - B, stroke: "#555" }));
    chart.appendChild(svg("line", { x1: L, y1: 4, x2: L, y2: H - B, stroke: "#555" }));
    [y0 + pad, y1 - pad].forEach((p) => {
      const t = svg("text", { x: 2, y: Y(p) + 4, "font-size": 10, fill: "#333" }); t.textContent = String(Math.round(p)); chart.appendChild(t);
    });
    const xl = svg("text", { x: W - 40, y: H - 4, "font-size": 10, fill: "#333" }); xl.textContent = "round →"; chart.appendChild(xl);
    if (s.curve) {
      const pts = [];
      for (let i = 0; i <= 40; i++) { const t = (i / 40) * s.curve.dl; pts.push(`${X(t).toFixed(1)},${Y(concession(s.curve, t)).toFixed(1)}`); }
      chart.appendChild(svg("polyline", { points: pts.join(" "), fill: "none", stroke: "#0b5394", "stroke-width": 1.5, "stroke-dasharray": "4 3" }));
    }
    offers.forEach((o) => {
      const x = X(o.round), y = Y(o.price);
      const mark = o.by === "me"
        ? svg("circle", { cx: x, cy: y, r: 4.5, fill: "#0b5394" })
        : svg("rect", { x: x - 4, y: y - 4, width: 8, height: 8, fill: "#b45f06" });
      if (o.kind === "accept" || o.kind === "confirm") { mark.setAttribute("stroke", "#0a7d28"); mark.setAttribute("stroke-width", 3); }
      chart.appendChild(mark);
    });
    const cap = el("figcaption");
    cap.appendChild(el("strong", `${s.role === "buyer" ? "Buying from" : "Selling to"} ${short(s.peer)}`));
    cap.appendChild(el("span", ` · ${s.quantity_wh} Wh for ${fmtTime(s.window)} · `));
    cap.appendChild(el("span", s.outcome === "agreed" ? `agreed (${short(s.agreement)})` : s.outcome, "outcome"));
    if (s.curve) { cap.appendChild(el("span", ` · own curve ip ${s.curve.ip}, rp ${s.curve.rp}, dl ${s.curve.dl}, cr ${s.curve.cr}`, "muted")); }
    fig.appendChild(cap);
    fig.appendChild(chart);
    const legend = el("p", "● this household's offers  ■ the peer's offers  - - own concession curve  (green ring: accepted)", "muted legend");
    fig.appendChild(legend);
    const details = el("details");  // folded: six sessions of tables would bury the schedule on a phone
    details.appendChild(el("summary", `Offers as a table (${s.offers.length})`));
    const wrap = el("div", undefined, "scroll");
    wrap.tabIndex = 0;  // a table wider than a phone scrolls: reachable and scrollable by keyboard
    wrap.setAttribute("role", "region");
    wrap.setAttribute("aria-label", `Offers with ${s.peer}`);
    const table = el("table", undefined, "offers");
    table.appendChild(el("caption", "Offers in order", "sr"));
    const head = el("tr");
    ["Round", "By", "Message", "Price", "Wh"].forEach((h) => { const th = el("th", h); th.scope = "col"; head.appendChild(th); });
    const thead = el("thead"); thead.appendChild(head); table.appendChild(thead);
    const tbody = el("tbody");
    s.offers.forEach((o) => tbody.appendChild(row([o.round, o.by === "me" ? "this household" : "peer", o.kind, o.price, o.quantity_wh])));
    table.appendChild(tbody);
    wrap.appendChild(table);
    details.appendChild(wrap);
    details.open = openTables.has(s.id);  // a push redraws the figure: keep what the viewer unfolded
    details.addEventListener("toggle", () => { if (details.open) { openTables.add(s.id); } else { openTables.delete(s.id); } });
    fig.appendChild(details);
    return fig;
  }

  function renderTrading(t) {
    if (!t) { return; }
    $("agent-state").textContent = t.state;
    $("agent-with").textContent = t.with.length ? "with " + t.with.join(", ") : "";
    const box = $("sessions");
    box.replaceChildren(...(t.sessions.length ? t.sessions.map(sessionFigure) : [el("p", "No negotiation yet.")]));
  }

  function renderLedger(d) {
    const body = $("schedule").querySelector("tbody");
    body.replaceChildren(...d.schedule.map((a) => {
      const peer = el("span", short(a.peer), "mono"); peer.title = a.peer;
      const tr = row([timeEl(a.start), a.kind === "loan" ? `loan, back by ${fmtTime(a.return_by)}` : a.kind, a.role, peer, a.state,
        a.quantity_wh, a.kind === "loan" ? a.returned_wh : a.delivered_wh, a.unit_price, a.tokens]);
      tr.dataset.agreement = a.id;
      return tr;
    }));
    $("schedule-empty").hidden = d.schedule.length > 0;
    const tk = d.tokens;
    $("tok-free").textContent = dash(tk.free);
    $("tok-escrow").textContent = dash(tk.escrow);
    $("tok-collateral").textContent = dash(tk.collateral);
    $("tok-history").querySelector("tbody").replaceChildren(...tk.history.map((h) => row([timeEl(h.at), h.what, h.amount, short(h.agreement)])));
    const dr = d.demand || [];
    $("demand-card").hidden = dr.length === 0;
    $("demand").querySelector("tbody").replaceChildren(...dr.map((e) =>
      row([timeEl(e.window_start), e.reward_per_kwh, e.state, dash(e.baseline_wh), dash(e.reduction_wh), dash(e.paid)])));
    const sv = d.savings;
    if (sv.tariff) {
      $("sav-grid").textContent = dash(sv.vs_grid);
      $("sav-battery").textContent = dash(sv.vs_battery);
      $("sav-note").textContent = `${sv.agreements} agreement${sv.agreements === 1 ? "" : "s"}, ${sv.energy_wh} Wh delivered; tariff ${sv.tariff.import} in / ${sv.tariff.export} out per kWh`;
    }
  }
  renderTrading(snap.trading);

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
  source.addEventListener("trade", (ev) => renderTrading(JSON.parse(ev.data)));
  source.addEventListener("ledger", (ev) => renderLedger(JSON.parse(ev.data)));
})();
