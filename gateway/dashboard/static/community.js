// The community view and the explorer: tables and charts drawn from the page's snapshot, then kept
// live by the server's SSE stream (EventSource; no polling). Text is set with textContent only.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const fmtTime = (ts) => (ts ? new Date(Number(ts) * 1000).toLocaleString() : "–");
  const short = (s) => (s ? String(s).slice(0, 10) + "…" : "–");
  const pct = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(1) + " %");
  document.querySelectorAll("time[data-ts]").forEach((el) => { el.textContent = fmtTime(el.dataset.ts); });

  function cell(tr, text, href, cls) {
    const td = document.createElement("td");
    if (href) { const a = document.createElement("a"); a.href = href; a.textContent = text; td.appendChild(a); }
    else { td.textContent = text; }
    if (cls) { td.className = cls; }
    tr.appendChild(td);
  }
  function fill(id, rows, build) {
    const body = $(id);
    if (!body) { return; }
    const frag = document.createDocumentFragment();
    rows.forEach((r) => { const tr = document.createElement("tr"); build(tr, r); frag.appendChild(tr); });
    body.replaceChildren(frag);
  }
  const agreementRow = (tr, a) => {
    tr.dataset.id = a.id; tr.dataset.status = a.status;
    cell(tr, short(a.id), "/explorer/agreement/" + a.id, "mono");
    cell(tr, short(a.seller), null, "mono"); cell(tr, short(a.buyer), null, "mono");
    cell(tr, String(a.quantity_wh)); cell(tr, String(a.unit_price));
    cell(tr, fmtTime(a.delivery_start)); cell(tr, a.status);
  };

  let volPlot = null, pricePlot = null;
  // one point, or a few close together, would span years on an auto-scaled time axis: at least +-1 h
  const hourPad = (u, min, max) => (max - min < 7200 ? [min - 3600, max + 3600] : [min, max]);
  const big = (u, vals) => vals.map((v) => (Math.abs(v) >= 1e6 ? v.toExponential(1) : String(v)));
  function charts(d) {
    if (typeof uPlot === "undefined") { return; }
    const width = (el) => Math.max(280, el.clientWidth);
    const vol = $("vol-chart");
    if (vol && d.hours) {
      const data = [d.hours.map((h) => h[0]), d.hours.map((h) => h[1]), d.hours.map((h) => h[2])];
      if (volPlot) { volPlot.setData(data); } else {
        const bars = uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.6, 40] }) : undefined;
        volPlot = new uPlot({ width: width(vol), height: 220, series: [{},
          { label: "between neighbours Wh", stroke: "#0b5394", fill: "rgba(11,83,148,.35)", paths: bars },
          { label: "with the provider Wh", stroke: "#b45f06", fill: "rgba(180,95,6,.35)", paths: bars }],
          scales: { x: { time: true, range: hourPad } }, axes: [{}, { label: "Wh", size: 60 }] }, data, vol);
        window.addEventListener("resize", () => volPlot.setSize({ width: width(vol), height: 220 }));
      }
    }
    const pr = $("price-chart");
    if (pr && d.prices) {
      const xs = new Set(d.prices.p2p.map((p) => p[0]));
      d.prices.tariffs.forEach((t) => xs.add(t[0]));
      const sorted = Array.from(xs).sort((a, b) => a - b);
      const at = (list, x) => { const f = list.find((p) => p[0] === x); return f ? Number(f[1]) : null; };
      const step = (i, x) => { let v = null; d.prices.tariffs.forEach((t) => { if (t[0] <= x) { v = Number(t[i]); } }); return v; };
      const data = [sorted, sorted.map((x) => at(d.prices.p2p, x)), sorted.map((x) => step(1, x)), sorted.map((x) => step(2, x))];
      if (pricePlot) { pricePlot.setData(data); } else {
        pricePlot = new uPlot({ width: width(pr), height: 220, series: [{},
          { label: "agreed price", stroke: "#0b5394", width: 0, points: { show: true, size: 7 } },
          { label: "provider buys at", stroke: "#38761d", width: 2 },
          { label: "provider sells at", stroke: "#990000", width: 2 }],
          scales: { x: { time: true, range: hourPad } },
          axes: [{}, { label: "per kWh", size: 80, values: big }] }, data, pr);
        window.addEventListener("resize", () => pricePlot.setSize({ width: width(pr), height: 220 }));
      }
    }
  }

  function summary(d) {
    if (!d.figures) { return; }
    const f = d.figures;
    if ($("f-agreements")) { $("f-agreements").textContent = f.agreements; }
    if ($("f-status")) { $("f-status").textContent = Object.entries(f.by_status || {}).map(([k, v]) => v + " " + k).join(", "); }
    if ($("f-p2p")) { $("f-p2p").textContent = f.p2p_wh; }
    if ($("f-share")) { $("f-share").textContent = pct(f.p2p_share); }
    if ($("f-self")) { $("f-self").textContent = pct(f.self_sufficiency); }
    if ($("t-buy") && d.tariff) { $("t-buy").textContent = d.tariff.buy; $("t-sell").textContent = d.tariff.sell; }
    if ($("indexed")) { $("indexed").textContent = d.indexed_to; }
    if ($("head")) { $("head").textContent = d.head; }
    fill("days", (d.days || []).slice().reverse(), (tr, r) => {
      cell(tr, new Date(r[0] * 1000).toLocaleDateString()); cell(tr, String(r[1])); cell(tr, String(r[2]));
    });
    charts(d);
  }

  function chain(d) {
    summary(d);
    if (d.agreements) { fill("agreements", d.agreements, agreementRow); }
    if (d.disputes) {
      fill("disputes", d.disputes, (tr, a) => {
        cell(tr, short(a.id), "/explorer/agreement/" + a.id, "mono");
        cell(tr, String(a.dispute ? a.dispute.seller_wh : "–")); cell(tr, String(a.dispute ? a.dispute.buyer_wh : "–"));
        cell(tr, String(a.quantity_wh)); cell(tr, fmtTime(a.dispute ? a.dispute.deadline : null));
      });
      if ($("no-disputes")) { $("no-disputes").hidden = d.disputes.length > 0; }
    }
    if (d.participants && $("participants")) {
      const ul = $("participants"); ul.replaceChildren();
      d.participants.forEach((p) => { const li = document.createElement("li"); const a = document.createElement("a");
        a.href = "/household/" + p; a.textContent = p; li.appendChild(a); ul.appendChild(li); });
    }
    if (d.events) {
      fill("events", d.events, (tr, e) => {
        cell(tr, String(e.block)); cell(tr, e.name, e.args && e.args.id ? "/explorer/agreement/" + e.args.id : null);
        cell(tr, Object.entries(e.args || {}).filter(([k]) => k !== "id").map(([k, v]) => k + "=" + (typeof v === "object" ? "…" : String(v).slice(0, 12))).join(" "));
        cell(tr, short(e.tx), "/explorer/tx/" + e.tx, "mono");
      });
    }
    if (d.txs) {
      fill("txs", d.txs, (tr, t) => {
        cell(tr, String(t.block)); cell(tr, t.fn || "(not decoded)"); cell(tr, short(t.sender), "/explorer/address/" + t.sender, "mono");
        cell(tr, t.status === 1 ? "ok" : "reverted"); cell(tr, short(t.hash), "/explorer/tx/" + t.hash, "mono");
      });
    }
    if (d.blocks) {
      fill("blocks", d.blocks, (tr, b) => {
        cell(tr, String(b.number)); cell(tr, fmtTime(b.ts)); cell(tr, String(b.txs)); cell(tr, String(b.gas_used)); cell(tr, short(b.hash), null, "mono");
      });
    }
    if (d.messages) { messages(d.messages); }
    const st = $("ag-status");
    if (st && d.agreements) {
      const now = d.agreements.find((a) => a.id === st.dataset.id);
      if (now && now.status !== st.dataset.status) { location.reload(); }
    }
    document.body.dataset.block = String(d.indexed_to);
  }

  function messages(m) {
    if ($("msg-counts")) {
      const parts = Object.entries(m.counts || {}).map(([k, v]) => v + " " + k);
      $("msg-counts").textContent = (parts.join(", ") || "No messages yet") + (m.rejected ? "; " + m.rejected + " refused" : "");
    }
    fill("offers", m.offers || [], (tr, o) => {
      cell(tr, short(o.from), null, "mono"); cell(tr, o.side); cell(tr, fmtTime(o.window)); cell(tr, String(o.quantity_wh)); cell(tr, String(o.price));
    });
  }

  const snapEl = $("snapshot");
  if (snapEl) {
    const snap = JSON.parse(snapEl.textContent);
    chain(snap);
    const mine = $("mine");
    if (mine) { fill("agreements", JSON.parse(mine.textContent), agreementRow); }
  }
  const link = $("link");
  if (!link) { return; }
  const source = new EventSource("/community/events");
  source.addEventListener("open", () => { link.textContent = "live"; });
  source.addEventListener("error", () => { link.textContent = "reconnecting…"; });
  source.addEventListener("summary", (ev) => {
    summary(JSON.parse(ev.data));
    // a household's own agreements: fetched once per push (the push says the chain moved), never polled
    if ($("mine")) {
      fetch("/community/mine.json", { credentials: "same-origin" }).then((r) => (r.ok ? r.json() : null))
        .then((rows) => { if (rows) { fill("agreements", rows, agreementRow); } }).catch(() => {});
    }
  });
  source.addEventListener("chain", (ev) => { chain(JSON.parse(ev.data)); });
  source.addEventListener("message", (ev) => { const d = JSON.parse(ev.data); if (d.messages) { messages(d.messages); } });
})();
