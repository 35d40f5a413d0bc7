// perphedge web: renders the API's documents (the CLI's JSON) into the pages. No number is computed here beyond
// formatting; every value shown is a field of a document the API returned.
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const $ = (id) => document.getElementById(id);

function esc(x) {
  return String(x).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
function num(x, nd = 2) {
  if (x === null || x === undefined) return "—";
  return Number(x).toLocaleString("en-US", { minimumFractionDigits: nd, maximumFractionDigits: nd });
}
function usd(x, nd = 0) { return x === null || x === undefined ? "—" : num(x, nd) + " USD"; }
function pct(x, nd = 1) { return x === null || x === undefined ? "—" : (Number(x) * 100).toFixed(nd) + "%"; }
function table(cols, rows, id) {
  const head = cols.map((c) => `<th>${esc(c[0])}</th>`).join("");
  const body = rows.map((r) => "<tr>" + cols.map((c) => `<td class="${c[2] || ""}">${c[1](r)}</td>`).join("") + "</tr>").join("");
  return `<table${id ? ` id="${id}"` : ""}><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}
function kv(pairs) {
  return "<dl>" + pairs.map(([k, v, id]) => `<dt>${esc(k)}</dt><dd${id ? ` id="${id}"` : ""}>${v}</dd>`).join("") + "</dl>";
}

async function api(method, url, body, headers = {}) {
  const opts = { method, headers: { "X-CSRF-Token": CSRF, ...headers }, credentials: "same-origin" };
  if (body !== undefined) opts.body = body;
  const r = await fetch(url, opts);
  let doc = null;
  try { doc = await r.json(); } catch (e) { doc = { error: `HTTP ${r.status}` }; }
  if (!r.ok) { const err = new Error(doc.error || `HTTP ${r.status}`); err.field = doc.field; err.status = r.status; throw err; }
  return doc;
}

function clearErrors(root) {
  (root || document).querySelectorAll(".field-error").forEach((e) => { e.hidden = true; e.textContent = ""; });
}
// The message goes beside the field it names (a flag of the form, or the YAML editor for a file's field),
// else into the page's general error line.
function showError(err, general, fallbackField) {
  const field = err.field;
  let target = null;
  if (field) target = document.querySelector(`.field-error[data-for="${CSS.escape(field)}"]`);
  if (!target && fallbackField) target = document.querySelector(`.field-error[data-for="${fallbackField}"]`);
  if (!target) target = general;
  target.textContent = err.message;
  target.hidden = false;
}

document.querySelectorAll("form[data-csrf-form]").forEach((f) => f.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  await fetch(f.action, { method: "POST", headers: { "X-CSRF-Token": CSRF }, credentials: "same-origin" });
  location.href = "/";
}));

// ------------------------------------------------------------------------------------------------ book

function distanceBar(d, amber, red) {
  if (d === null || d === undefined) return '<span class="muted">no liquidation price</span>';
  const cls = d < red ? "red" : d < amber ? "amber" : "green";
  const w = Math.max(2, Math.min(100, d * 100));
  return `<div class="bar ${cls}" data-level="${cls}"><span style="width:${w}%"></span></div> <b>${pct(d)}</b>`;
}

function renderJournal(journal) {
  const perDay = {};
  journal.filter((r) => r.kind === "funding").forEach((r) => {
    const day = r.ts.slice(0, 10);
    const v = Number((r.data && (r.data.amount_usd ?? r.data.usd)) || 0);
    perDay[day] = (perDay[day] || 0) + v;
  });
  const days = Object.keys(perDay).sort().reverse();
  $("book-funding-days").innerHTML = days.length
    ? table([["day (UTC)", (d) => d], ["funding USD", (d) => num(perDay[d], 2), "n"]], days)
    : '<span class="muted">no funding settlement journaled yet</span>';
  $("book-journal").innerHTML = table([
    ["seq", (r) => r.seq, "n"], ["time (UTC)", (r) => esc(r.ts)], ["kind", (r) => esc(r.kind)],
    ["instrument", (r) => esc(r.instrument || "")], ["client id", (r) => esc(r.client_id || "")],
    ["details", (r) => `<code>${esc(JSON.stringify(r.data)).slice(0, 300)}</code>`],
  ], journal.slice().reverse(), "journal-table");
  const seq = String(journal.length ? journal[journal.length - 1].seq : 0);
  if (seq !== document.body.dataset.bookSeq) {  // when the page first showed this row (epoch ms)
    document.body.dataset.bookSeqAt = String(performance.timeOrigin + performance.now());
  }
  document.body.dataset.bookSeq = seq;
}

function renderBook(doc, cfg) {
  $("book-error").hidden = true;
  $("book-updated").textContent = "as of " + doc.as_of + (doc.feed.stale ? " (feed STALE)" : "");
  $("book-value").innerHTML = kv([
    ["total", usd(doc.value.total_usd), "v-total"],
    ["holdings", usd(doc.value.holdings_usd)],
    ["accounts", usd(doc.value.accounts_usd)],
    ["fees paid", usd(doc.fees_usd, 2)],
  ]);
  const h = doc.hedge;
  $("book-ratio").innerHTML = kv([
    ["achieved", `<b id="achieved-ratio">${num(h.achieved_ratio, 3)}</b>`],
    ["target", `<span id="target-ratio">${num(h.target_ratio, 3)}</span>`],
    ["band", num(h.band, 3)],
    ["rebalance due", h.rebalance_due ? '<b class="bad">yes</b>' : "no", "rebalance-due"],
    ["reason", esc(h.reason)],
  ]);
  const f = doc.funding;
  $("book-funding").innerHTML = kv([
    ["received so far", usd(f.received_usd, 2), "funding-received"],
    ["paid so far", usd(f.paid_usd, 2)],
    ["net", usd(f.net_usd, 2)],
    ["expected per day", usd(f.expected_usd_per_day, 2)],
  ]);
  $("book-alerts").innerHTML = doc.alerts.length
    ? "<ul>" + doc.alerts.map((a) => `<li class="bad">${esc(typeof a === "string" ? a : (a.message || JSON.stringify(a)))}</li>`).join("") + "</ul>"
    : '<span class="muted">none open</span>';
  const rows = Object.entries(doc.delta.by_asset).map(([a, v]) => ({ a, v }));
  $("book-delta").innerHTML = table(
    [["asset", (r) => esc(r.a)], ["delta USD", (r) => num(r.v, 0), "n"]],
    rows.concat([{ a: "net", v: doc.delta.net_delta_usd }]),
    "delta-table",
  );
  const legs = [];
  doc.accounts.forEach((acc) => (acc.positions || []).forEach((p) => legs.push({ acc: acc.name, ...p })));
  $("book-legs").innerHTML = legs.length
    ? table([
      ["account", (r) => esc(r.acc)],
      ["instrument", (r) => esc(r.instrument)],
      ["side", (r) => esc(r.side)],
      ["contracts", (r) => `<span class="contracts">${num(r.contracts, 0)}</span>`, "n"],
      ["entry", (r) => num(r.entry_price, 2), "n"],
      ["mark", (r) => num(r.mark_price, 2), "n"],
      ["leverage", (r) => num(r.leverage, 2), "n"],
      ["liquidation", (r) => num(r.liquidation_price, 2), "n"],
      ["distance", (r) => distanceBar(r.distance_to_liquidation, cfg.amber, cfg.red)],
      ["funding/day", (r) => usd(r.funding_usd_per_day, 2), "n"],
    ], legs, "legs-table")
    : '<span class="muted" id="no-legs">no open hedge leg</span>';
  $("book-warnings").innerHTML = doc.warnings.map((w) => `<li>${esc(w)}</li>`).join("");
  // the newest journal row shown (the journal is read after the status: it is at least as new)
}

async function bookPage() {
  const cfg = JSON.parse($("page-data").textContent);
  const base = "/api/book/" + encodeURIComponent(cfg.book);
  let version = null;
  let lastFull = 0;
  async function refresh() {
    try {
      // each part is drawn as soon as it arrives (the journal is the quicker read)
      await Promise.all([
        api("GET", base + "/journal?limit=200").then(renderJournal),
        api("GET", base).then((doc) => renderBook(doc, cfg)),
      ]);
    } catch (e) { $("book-error").textContent = e.message; $("book-error").hidden = false; }
    lastFull = Date.now();
  }
  async function poll() {
    try {
      const v = (await api("GET", base + "/version")).version;
      if (v !== version || Date.now() - lastFull > 15000) { version = v; await refresh(); }
    } catch (e) { $("book-error").textContent = e.message; $("book-error").hidden = false; }
    setTimeout(poll, 200);
  }
  poll();
  const act = (id, path, confirmText) => {
    const b = $(id);
    if (!b) return;
    b.addEventListener("click", async () => {
      if (confirmText && !window.confirm(confirmText)) return;
      $("trade-result").textContent = "…";
      try {
        const doc = await api("POST", base + path);
        $("trade-result").textContent = doc.reason || (doc.halted !== undefined ? "halted" : "done");
      } catch (e) { $("trade-result").textContent = e.message; }
    });
  };
  act("btn-rebalance", "/rebalance", "Send the rebalance orders now?");
  act("btn-halt", "/halt", "Halt all trading by this book and cancel its open orders?");
  act("btn-resume", "/resume", null);
}

// ------------------------------------------------------------------------------------------------ plan

function formQuery(form) {
  const q = new URLSearchParams();
  new FormData(form).forEach((v, k) => { if (String(v).trim() !== "") q.append(k, v); });
  return q;
}

function renderPlan(doc) {
  $("plan-result").hidden = false;
  const p = doc.portfolio, h = doc.hedge;
  $("plan-portfolio").innerHTML = kv([
    ["value", usd(p.value_usd, 2), "p-value"], ["exposure", usd(p.exposure_usd, 2), "p-exposure"],
    ["cash", usd(p.cash_usd, 2)],
  ]) + table([["asset", (r) => esc(r.asset)], ["value USD", (r) => num(r.value_usd, 2), "n"], ["weight", (r) => pct(r.weight), "n"]], p.holdings);
  $("plan-hedge").innerHTML = kv([
    ["ratio", num(h.ratio, 3), "h-ratio"], ["method", esc(h.method)], ["target", usd(h.target_usd, 2), "h-target"],
    ["notional", usd(h.notional_usd, 2), "h-notional"], ["collateral", usd(h.collateral_usd, 2), "h-collateral"],
    ["net delta", usd(h.net_delta_usd, 2), "h-net-delta"], ["achieved ratio", num(h.achieved_ratio, 4), "h-achieved"],
    ["funding per day", usd(h.funding_usd_per_day, 4), "h-funding-day"], ["funding per year", usd(h.funding_usd_per_year, 2)],
  ]);
  $("plan-legs").innerHTML = table([
    ["instrument", (r) => esc(r.instrument)], ["kind", (r) => esc(r.kind)], ["side", (r) => esc(r.side)],
    ["contracts", (r) => `<span class="leg-contracts">${r.contracts}</span>`, "n"],
    ["notional USD", (r) => `<span class="leg-notional">${num(r.notional_usd, 2)}</span>`, "n"],
    ["leverage", (r) => num(r.leverage, 2), "n"],
    ["collateral", (r) => `${num(r.collateral_amount, 6)} ${esc(r.collateral_asset)} (${esc(r.collateral_source)})`],
    ["initial margin", (r) => num(r.initial_margin, 6), "n"],
    ["liquidation", (r) => `<span class="leg-liq">${r.liquidation_price === null ? "none" : num(r.liquidation_price, 2)}</span>`, "n"],
    ["bankruptcy", (r) => (r.bankruptcy_price === null ? "none" : num(r.bankruptcy_price, 2)), "n"],
    ["funding USD/day", (r) => num(r.funding_usd_per_day, 4), "n"],
  ], h.legs, "legs-table");
  const sc = doc.scenarios;
  $("plan-scenarios").innerHTML = table([
    ["scenario", (r) => esc(r.name)], ["proxy move", (r) => pct(r.proxy_return), "n"],
    ["spot PnL", (r) => num(r.spot_pnl_usd, 2), "n"], ["hedge PnL", (r) => num(r.hedge_pnl_usd, 2), "n"],
    ["net PnL", (r) => `<span class="sc-net">${num(r.net_pnl_usd, 2)}</span>`, "n"],
    ["liquidated", (r) => (r.liquidated ? '<b class="bad">yes</b>' : "")],
  ], sc, "scenario-table");
  if (window.Plotly) {
    const pts = sc.slice().sort((a, b) => a.proxy_return - b.proxy_return);
    Plotly.react("plan-chart", [
      { x: pts.map((s) => s.proxy_return * 100), y: pts.map((s) => s.spot_pnl_usd), name: "unhedged (spot PnL)", mode: "lines+markers", text: pts.map((s) => s.name) },
      { x: pts.map((s) => s.proxy_return * 100), y: pts.map((s) => s.net_pnl_usd), name: "hedged (net PnL)", mode: "lines+markers", text: pts.map((s) => s.name) },
    ], { margin: { t: 10 }, xaxis: { title: { text: "proxy move %" } }, yaxis: { title: { text: "USD" } }, height: 320 }, { displaylogo: false, responsive: true });
  }
  if (doc.compare) {
    $("plan-compare-card").hidden = false;
    $("plan-compare").innerHTML = table([
      ["variant", (r) => esc(r.variant)], ["instrument", (r) => esc(r.instrument)],
      ["notional USD", (r) => num(r.notional_usd, 2), "n"], ["collateral USD", (r) => num(r.collateral_usd, 2), "n"],
      ["net delta USD", (r) => num(r.net_delta_usd, 2), "n"], ["funding USD/yr", (r) => num(r.funding_usd_per_year, 2), "n"],
      ["min liq. distance", (r) => pct(r.min_liquidation_distance), "n"], ["error", (r) => esc(r.error || "")],
    ], doc.compare, "compare-table");
  } else { $("plan-compare-card").hidden = true; }
  $("plan-warnings").innerHTML = doc.warnings.map((w) => `<li>${esc(w.message)}</li>`).join("");
}

async function runPlan() {
  clearErrors();
  $("plan-error").hidden = true;
  const q = formQuery($("plan-form"));
  q.set("source", "portfolio.yaml");
  try {
    const doc = await api("POST", "/api/plan?" + q.toString(), $("plan-yaml").value, { "Content-Type": "application/yaml" });
    renderPlan(doc);
    document.body.dataset.planDone = String(Date.now());
  } catch (e) {
    $("plan-result").hidden = true;
    // a message about the file (its name, line or field) goes beside the YAML editor
    const aboutFile = e.message.startsWith("portfolio.yaml:");
    showError(aboutFile ? { message: e.message, field: "yaml" } : e, $("plan-error"), "yaml");
    document.body.dataset.planDone = String(Date.now());
  }
}

async function planPage() {
  $("plan-form").addEventListener("submit", (ev) => { ev.preventDefault(); runPlan(); });
  $("plan-file").addEventListener("change", () => { location.href = "/plan?file=" + encodeURIComponent($("plan-file").value); });
  let t = null;
  $("plan-yaml").addEventListener("input", () => { clearTimeout(t); t = setTimeout(runPlan, 600); });
  if ($("plan-yaml").value.trim()) runPlan();
}

// ------------------------------------------------------------------------------------------------ calc

async function calcPage() {
  const run = async () => {
    clearErrors();
    $("calc-error").hidden = true;
    try {
      const d = await api("GET", "/api/calc?" + formQuery($("calc-form")).toString());
      const m = (x) => (x === null || x === undefined ? "—" : `${num(x.value, 8)} ${esc(x.unit)}`);
      $("calc-result").innerHTML = kv([
        ["instrument", esc(d.instrument) + ` (${esc(d.kind)})`], ["size", m(d.size)], ["notional", m(d.notional), "c-notional"],
        ["margin", m(d.margin), "c-margin"], ["maintenance margin", m(d.maintenance_margin)],
        ["liquidation price", m(d.liquidation_price), "c-liq"], ["bankruptcy price", m(d.bankruptcy_price), "c-bankruptcy"],
        ["PnL", m(d.pnl)], ["PnL USD", m(d.pnl_usd)], ["ROE", d.roe === null ? "—" : pct(d.roe, 2)],
        ["fee open", m(d.fee_open)], ["funding per settlement", m(d.funding)], ["funding per day", m(d.funding_per_day)],
        ["method", esc(d.liquidation_method)],
      ]);
    } catch (e) { $("calc-result").innerHTML = ""; showError(e, $("calc-error")); }
    document.body.dataset.calcDone = String(Date.now());
  };
  $("calc-form").addEventListener("submit", (ev) => { ev.preventDefault(); run(); });
  run();
}

// ------------------------------------------------------------------------------------------------ backtests

async function loadResults() {
  const d = await api("GET", "/api/backtest/results");
  $("bt-results").innerHTML = d.results.length ? table([
    ["run", (r) => esc(r.name)], ["window", (r) => `${esc(r.start)} → ${esc(r.end)}`], ["policy", (r) => esc(r.policy)],
    ["hedged", (r) => pct(r.hedged_total_return), "n"], ["unhedged", (r) => pct(r.unhedged_total_return), "n"],
    ["max DD hedged", (r) => pct(r.hedged_max_drawdown), "n"], ["HE", (r) => num(r.hedge_effectiveness, 2), "n"],
    ["report", (r) => (r.report ? `<a href="#" data-report="${esc(r.name)}">show</a>` : "")],
  ], d.results, "results-table") : '<span class="muted">no results yet</span>';
  $("bt-results").querySelectorAll("a[data-report]").forEach((a) => a.addEventListener("click", (ev) => { ev.preventDefault(); showReport(a.dataset.report); }));
  $("bt-sweeps").innerHTML = d.sweeps.length ? d.sweeps.map((s) => {
    const keys = s.top.length ? Object.keys(s.top[0].overrides) : [];
    return `<h3>${esc(s.file)}: ranked by ${esc(s.rank_by)}</h3>` + table(
      [["#", (r) => s.top.indexOf(r) + 1, "n"]].concat(keys.map((k) => [k, (r) => esc(r.overrides[k])]))
        .concat([["total", (r) => pct(r["hedged.total_return"]), "n"], ["max DD", (r) => pct(r["hedged.max_drawdown"]), "n"],
          ["Sharpe", (r) => num(r["hedged.sharpe"]), "n"], ["HE", (r) => num(r.hedge_effectiveness), "n"],
          ["funding USD", (r) => num(r.funding_received_usd, 0), "n"], ["liq.", (r) => r.liquidations, "n"]]), s.top);
  }).join("") : '<span class="muted">no sweep.json in the output folder (perphedge sweep GRID --out &lt;out&gt;/sweep.json)</span>';
}

function showReport(name) {
  $("bt-report-card").hidden = false;
  $("bt-report-name").textContent = name;
  $("bt-report").src = "/api/backtest/results/" + encodeURIComponent(name) + "/report.html";
}

async function backtestsPage() {
  loadResults();
  $("bt-start").addEventListener("click", async () => {
    clearErrors();
    $("bt-status").textContent = "running…";
    $("bt-start").disabled = true;
    try {
      const d = await api("POST", "/api/backtest", JSON.stringify({ run: $("bt-run").value }), { "Content-Type": "application/json" });
      $("bt-summary-card").hidden = false;
      $("bt-summary").innerHTML = table([
        ["", (r) => r[0]], ["start USD", (r) => num(r[1].start_value_usd, 0), "n"], ["end USD", (r) => num(r[1].end_value_usd, 0), "n"],
        ["total", (r) => pct(r[1].total_return), "n"], ["volatility", (r) => pct(r[1].volatility), "n"],
        ["max drawdown", (r) => pct(r[1].max_drawdown), "n"], ["Sharpe", (r) => num(r[1].sharpe), "n"], ["CVaR 95%", (r) => pct(r[1].cvar_95, 2), "n"],
      ], [["hedged", d.hedged], ["unhedged", d.unhedged]], "bt-table") + kv([
        ["hedge effectiveness", num(d.hedge_effectiveness, 3), "bt-he"], ["funding received", usd(d.funding_received_usd), "bt-funding"],
        ["fees", usd(d.fees_usd)], ["rebalances", d.rebalances, "bt-rebalances"], ["liquidations", d.liquidations.length],
        ["config hash", `<code>${esc(d.config_hash)}</code>`],
      ]);
      $("bt-status").textContent = "done";
      await loadResults();
      const name = d.files.length ? d.files[0].split("/").slice(-2)[0] : null;
      if (name) showReport(name);
    } catch (e) { $("bt-status").textContent = ""; showError(e, $("bt-error"), "run"); }
    $("bt-start").disabled = false;
    document.body.dataset.backtestDone = String(Date.now());
  });
}

// ------------------------------------------------------------------------------------------------ stress

async function stressPage() {
  $("stress-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("stress-error").hidden = true;
    $("stress-status").textContent = "running…";
    const q = formQuery($("stress-form"));
    q.set("histogram", "1");
    try {
      const d = await api("GET", "/api/stress?" + q.toString());
      $("stress-result").hidden = false;
      const mc = d.monte_carlo, rec = mc.recommended;
      $("stress-rec").innerHTML = kv([
        ["without top-ups", rec.without_top_up === null ? "none" : `<b id="rec-lev">${rec.without_top_up}x</b>`],
        ["with daily top-ups", rec.with_top_up === null ? "none" : `${rec.with_top_up}x`],
        ["max P(liquidation)", pct(rec.max_liquidation_probability, 2)],
        ["model", `${esc(mc.model)}, ${mc.paths} paths × ${mc.horizon_days} days, seed ${mc.seed}`],
      ]);
      $("stress-replays").innerHTML = table([
        ["window", (r) => `${esc(r.name)} (${esc(r.start)} → ${esc(r.end)})`],
        ["spot PnL", (r) => num(r.spot_pnl_usd, 0), "n"], ["hedge PnL", (r) => num(r.hedge_pnl_usd, 0), "n"],
        ["net PnL", (r) => num(r.net_pnl_usd, 0), "n"], ["max DD", (r) => pct(r.max_drawdown), "n"],
        ["liquidated", (r) => (r.skipped ? `skipped: ${esc(r.skipped)}` : r.liquidated ? `<b class="bad">${esc(r.liquidation_day)}</b>` : "")],
      ], d.replays, "replays-table");
      const grid = d.shock_grid.filter((r) => !r.error && r.funding_regime === "normal");
      const scen = [...new Set(grid.map((r) => r.scenario))], levs = [...new Set(grid.map((r) => r.leverage))];
      const cell = (s, l) => grid.find((r) => r.scenario === s && r.leverage === l);
      Plotly.react("stress-grid", [{
        type: "heatmap", x: levs.map((l) => l + "x"), y: scen,
        z: scen.map((s) => levs.map((l) => (cell(s, l) ? cell(s, l).net_pnl_pct * 100 : null))),
        text: scen.map((s) => levs.map((l) => (cell(s, l) && cell(s, l).liquidated ? "L" : ""))), texttemplate: "%{z:.1f}% %{text}",
        colorscale: [[0, "#d0342c"], [0.5, "#f7f7f7"], [1, "#2e9d57"]], zmid: 0,
      }], { margin: { t: 10, l: 160 }, height: 60 + 28 * scen.length }, { displaylogo: false, responsive: true });
      if (d.histogram) {
        const e = d.histogram.edges_usd, mid = e.slice(0, -1).map((x, i) => (x + e[i + 1]) / 2);
        Plotly.react("stress-mc", ["unhedged", "hedged"].filter((k) => d.histogram[k]).map((k) => ({ type: "bar", x: mid, y: d.histogram[k], name: k, opacity: 0.6 })),
          { barmode: "overlay", margin: { t: 10 }, xaxis: { title: { text: "PnL USD" } }, height: 300 }, { displaylogo: false, responsive: true });
      }
      $("stress-mc-table").innerHTML = table([
        ["book", (r) => r[0]], ["mean", (r) => num(r[1].mean_usd, 0), "n"], ["5%", (r) => num(r[1].p5_usd, 0), "n"],
        ["median", (r) => num(r[1].p50_usd, 0), "n"], ["VaR 95%", (r) => num(r[1].var_95_usd, 0), "n"], ["ES 95%", (r) => num(r[1].es_95_usd, 0), "n"],
      ], [["unhedged", mc.unhedged], ["hedged", mc.hedged]].filter((r) => r[1]));
      $("stress-liq").innerHTML = table([
        ["instrument", (r) => esc(r.instrument)], ["leverage", (r) => r.leverage + "x", "n"],
        ["P(liq.)", (r) => pct(r.liquidation_probability, 2), "n"], ["P(liq.) with top-ups", (r) => pct(r.liquidation_probability_with_top_up, 2), "n"],
      ], mc.liquidation, "liq-table");
      $("stress-status").textContent = "done";
    } catch (e) { $("stress-status").textContent = ""; showError(e, $("stress-error")); }
    document.body.dataset.stressDone = String(Date.now());
  });
}

// ------------------------------------------------------------------------------------------------ data

async function dataPage() {
  const load = async () => {
    $("data-error").hidden = true;
    try {
      const s = await api("GET", "/api/data/status");
      $("data-store").textContent = s.store;
      $("data-coverage").innerHTML = s.series.length ? table([
        ["table", (r) => esc(r.table)], ["source", (r) => esc(r.source)], ["symbol", (r) => esc(r.symbol)],
        ["timeframe", (r) => esc(r.timeframe)], ["first", (r) => esc(String(r.first).slice(0, 10))], ["last", (r) => esc(String(r.last).slice(0, 10))],
        ["rows", (r) => num(r.rows, 0), "n"], ["missing", (r) => (r.missing ? num(r.missing, 0) : ""), "n"],
      ], s.series, "coverage-table") : '<span class="muted" id="data-empty">the store is empty: import the sample</span>';
      const c = await api("GET", "/api/data/check");
      $("data-findings").innerHTML = c.findings.length ? table([
        ["kind", (r) => esc(r.kind)], ["series", (r) => esc(`${r.table} ${r.source} ${r.symbol}`)], ["count", (r) => num(r.count, 0), "n"],
        ["detail", (r) => esc(r.detail)],
      ], c.findings, "findings-table") : '<span class="muted">no findings</span>';
    } catch (e) { $("data-error").textContent = e.message; $("data-error").hidden = false; }
    document.body.dataset.dataDone = String(Date.now());
  };
  $("data-import").addEventListener("click", async () => {
    $("data-import-status").textContent = "importing…";
    try {
      const d = await api("POST", "/api/data/import-sample");
      $("data-import-status").textContent = `imported ${num(d.rows ?? 0, 0)} rows`;
    } catch (e) { $("data-import-status").textContent = ""; $("data-error").textContent = e.message; $("data-error").hidden = false; }
    await load();
  });
  load();
}

const PAGES = { book: bookPage, plan: planPage, calc: calcPage, backtests: backtestsPage, stress: stressPage, data: dataPage };
const start = PAGES[document.body.dataset.page];
if (start) start();
