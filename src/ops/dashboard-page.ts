/**
 * The `/dashboard` page: one HTML document with its CSS and JS inline, no build step, nothing
 * fetched but this server's own `events` stream (server-sent events, see dashboard.ts). The
 * charts are SVG drawn by the page's script from the samples it holds (the server's history on
 * connect, one sample a second after that). Every text from the server is set with
 * `textContent`, never parsed as HTML.
 *
 * Elements carry `data-pool` / `data-consumer` / `data-breaker` and `data-field` attributes so
 * that tests (and scrapers) can read the numbers without depending on the layout.
 */
export const DASHBOARD_HTML = /* html */ `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sluice dashboard</title>
<link rel="icon" href="data:,">
<style>
  :root { --bg: #f6f7f9; --card: #fff; --fg: #1d2330; --muted: #6b7385; --line: #e2e5eb;
    --ok: #1f9d55; --warn: #c98a00; --bad: #d64545; --info: #2f6fde; --held: #8e59d9; --gray: #8a90a0; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; background: var(--bg); color: var(--fg); }
  header.top { display: flex; align-items: baseline; gap: 1rem; padding: .75rem 1.25rem; background: #1d2330; color: #fff; }
  header.top h1 { margin: 0; font-size: 1.15rem; letter-spacing: .02em; }
  header.top .muted { color: #aab1c2; }
  main { padding: 1rem 1.25rem 2rem; }
  h2 { font-size: .8rem; text-transform: uppercase; letter-spacing: .08em; color: var(--muted); margin: 1.25rem 0 .5rem; }
  .cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(480px, 1fr)); gap: 1rem; }
  .card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: .75rem 1rem; }
  .card.paused { border-color: var(--warn); box-shadow: inset 4px 0 0 var(--warn); }
  .card.down { border-color: var(--bad); box-shadow: inset 4px 0 0 var(--bad); }
  .card header { display: flex; flex-wrap: wrap; align-items: center; gap: .4rem; margin-bottom: .4rem; }
  .card h3 { margin: 0 .4rem 0 0; font-size: 1rem; word-break: break-all; }
  .badge { font-size: .75rem; padding: .05rem .45rem; border-radius: 999px; background: #eef0f4; color: var(--muted); }
  .badge.ok { background: #e3f5ea; color: var(--ok); } .badge.warn { background: #fff3d6; color: #8a5d00; }
  .badge.bad { background: #fde4e4; color: var(--bad); } .badge.info { background: #e4edfd; color: var(--info); }
  .meta { margin: .2rem 0; color: var(--muted); }
  .meta b { color: var(--fg); font-weight: 600; }
  dl.grid { display: grid; grid-template-columns: repeat(3, 1fr); gap: .2rem .75rem; margin: .3rem 0 .5rem; }
  dl.grid div { display: flex; justify-content: space-between; border-bottom: 1px dotted var(--line); }
  dt { color: var(--muted); } dd { margin: 0; font-variant-numeric: tabular-nums; font-weight: 600; }
  .meter { position: relative; height: 14px; background: #eef0f4; border-radius: 3px; overflow: hidden; margin: .2rem 0 .1rem; }
  .meter span { position: absolute; top: 0; bottom: 0; }
  .meter .mark { width: 2px; background: var(--fg); opacity: .7; }
  .meter-label { display: flex; justify-content: space-between; color: var(--muted); font-size: .75rem; }
  table.counts { border-collapse: collapse; width: 100%; margin: .3rem 0; font-variant-numeric: tabular-nums; }
  table.counts th, table.counts td { text-align: right; padding: .1rem .4rem; border-bottom: 1px solid var(--line); }
  table.counts th:first-child, table.counts td:first-child { text-align: left; color: var(--muted); font-weight: normal; }
  table.counts thead th { color: var(--muted); font-weight: normal; font-size: .75rem; }
  .charts { display: grid; grid-template-columns: 1fr 1fr; gap: .5rem; margin-top: .4rem; }
  .charts.one { grid-template-columns: 1fr; }
  .chart-title { font-size: .75rem; color: var(--muted); }
  svg.chart { width: 100%; height: 96px; display: block; background: #fbfcfd; border: 1px solid var(--line); border-radius: 4px; }
  svg.chart text { font-size: 9px; fill: var(--muted); }
  .legend { display: flex; flex-wrap: wrap; gap: .1rem .6rem; font-size: .72rem; color: var(--muted); }
  .legend i { display: inline-block; width: 10px; height: 3px; margin-right: 3px; vertical-align: middle; }
  details { margin-top: .4rem; } summary { cursor: pointer; color: var(--muted); }
  ol.errors { margin: .3rem 0 0; padding-left: 1.2rem; font-size: .8rem; max-height: 11rem; overflow: auto; }
  ol.errors li { margin-bottom: .2rem; word-break: break-word; }
  ol.errors .when { color: var(--muted); font-variant-numeric: tabular-nums; }
  table.breakers { border-collapse: collapse; background: var(--card); border: 1px solid var(--line); border-radius: 8px; font-variant-numeric: tabular-nums; }
  table.breakers th, table.breakers td { padding: .3rem .7rem; border-bottom: 1px solid var(--line); text-align: right; }
  table.breakers th:first-child, table.breakers td:first-child { text-align: left; }
  .empty { color: var(--muted); }
  [hidden] { display: none !important; }
</style>
</head>
<body>
<header class="top">
  <h1>sluice</h1>
  <span data-field="connection" class="badge">connecting…</span>
  <span class="muted">updated <span data-field="updated">–</span></span>
  <span class="muted" data-field="window"></span>
</header>
<main>
  <h2>Pools</h2>
  <div class="cards" id="pools"><p class="empty">waiting for the first sample…</p></div>
  <h2>Consumers</h2>
  <div class="cards" id="consumers"></div>
  <section id="breakers-section" hidden>
    <h2>Circuit breakers</h2>
    <table class="breakers"><thead><tr><th>breaker</th><th>state</th><th>failure rate</th><th>calls</th><th>failures</th><th>in a row</th><th>opened</th><th>probes left / running / ok</th></tr></thead><tbody id="breakers"></tbody></table>
  </section>
</main>
<script>
(function () {
  'use strict';
  var base = location.pathname.replace(/\\/+$/, '');
  var SVG = 'http://www.w3.org/2000/svg';
  var C = { limit: '#1d2330', max: '#b8bdc9', active: '#2f6fde', pending: '#c98a00', held: '#8e59d9',
    handled: '#1f9d55', retried: '#c98a00', deadLettered: '#d64545', givenBack: '#8a90a0',
    p50: '#1f9d55', p95: '#c98a00', p99: '#d64545' };
  var history = [];
  var conf = { intervalMs: 1000, historySeconds: 300, latencyWindowMs: 30000 };
  var lastAt = 0;

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) for (var k in attrs) {
      if (k === 'text') node.textContent = attrs[k];
      else if (k === 'className') node.className = attrs[k];
      else node.setAttribute(k, attrs[k]);
    }
    (children || []).forEach(function (c) { node.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); });
    return node;
  }
  function f(name) { return el('span', { 'data-field': name, text: '–' }); }
  function get(root, name) { return root.querySelector('[data-field="' + name + '"]'); }
  function set(root, name, text) { var n = get(root, name); if (n && n.textContent !== text) n.textContent = text; return n; }
  function badge(root, name, text, kind) { var n = set(root, name, text); if (n) n.className = 'badge ' + (kind || ''); }
  function fixed(n) { return n == null ? '–' : n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2); }
  function perSecond(n) { return n == null ? '–' : n >= 100 ? n.toFixed(0) : n.toFixed(1); }
  function clock(t) { var d = new Date(t); return d.toLocaleTimeString([], { hour12: false }); }
  function byName(list, name) { for (var i = 0; i < list.length; i++) if (list[i].name === name) return list[i]; return undefined; }
  function legend(items) {
    return el('div', { className: 'legend' }, items.map(function (it) {
      var i = el('i'); i.style.background = it[1];
      return el('span', null, [i, it[0]]);
    }));
  }
  function chartBox(title, key, items) {
    var svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('class', 'chart'); svg.setAttribute('data-chart', key);
        return el('div', null, [el('div', { className: 'chart-title', text: title }), svg, legend(items)]);
  }

  /**
   * Lines over the samples held (at most historySeconds, at least the last minute); a null value
   * breaks its line. Drawn in the SVG's own pixel size, so text is never stretched.
   */
  function draw(svg, points, series, minMax, band) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var W = Math.max(160, Math.round(svg.clientWidth || 320)), H = 96, L = 30, B = 12, T = 4;
    svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    var now = points.length ? points[points.length - 1].t : Date.now();
    var first = points.length ? points[0].t : now;
    var span = Math.min(conf.historySeconds * 1000, Math.max(60000, now - first)), from = now - span;
    var max = minMax || 1;
    series.forEach(function (s) { points.forEach(function (p) { var v = s.get(p); if (v != null && p.t >= from && v > max) max = v; }); });
    max = niceMax(max);
    var x = function (t) { return L + ((t - from) / span) * (W - L - 4); };
    var y = function (v) { return T + (1 - v / max) * (H - T - B); };
    var grid = document.createElementNS(SVG, 'path');
    grid.setAttribute('d', 'M' + L + ' ' + y(max) + 'H' + (W - 4) + 'M' + L + ' ' + y(max / 2) + 'H' + (W - 4) + 'M' + L + ' ' + y(0) + 'H' + (W - 4));
    grid.setAttribute('stroke', '#e2e5eb'); grid.setAttribute('fill', 'none');
    svg.appendChild(grid);
    // A band where band(sample) holds, over the interval each sample closes (from the one before).
    if (band) points.forEach(function (p, i) {
      if (p.t < from || !band(p)) return;
      var x0 = x(Math.max(from, i > 0 ? points[i - 1].t : p.t - conf.intervalMs)), x1 = x(p.t);
      var r = document.createElementNS(SVG, 'rect');
      r.setAttribute('x', x0.toFixed(1)); r.setAttribute('y', T); r.setAttribute('width', Math.max(1, x1 - x0).toFixed(1));
      r.setAttribute('height', H - T - B); r.setAttribute('fill', '#fbe7b0'); r.setAttribute('data-band', 'paused');
      svg.appendChild(r);
    });
    text(svg, L - 3, y(max) + 7, short(max), 'end');
    text(svg, L - 3, y(max / 2) + 3, short(max / 2), 'end');
    text(svg, L - 3, y(0), '0', 'end');
    var secs = Math.round(span / 1000);
    text(svg, L, H - 1, '−' + (secs >= 120 ? Math.round(secs / 60) + ' min' : secs + ' s'), 'start');
    text(svg, W - 4, H - 1, 'now', 'end');
    series.forEach(function (s) {
      var d = '', pen = false, run = 0;
      // A point with no neighbour on its line becomes a dot (a zero-length segment with round caps).
      var end = function () { if (run === 1) d += 'h0.01'; run = 0; };
      var last = -Infinity;
      points.forEach(function (p) {
        if (p.t < from) return;
        var v = s.get(p);
        // No line across the time nobody watched (no samples were taken then).
        if (p.t - last > 3 * conf.intervalMs) { end(); pen = false; }
        last = p.t;
        if (v == null) { end(); pen = false; return; }
        d += (pen ? 'L' : 'M') + x(p.t).toFixed(1) + ' ' + y(v).toFixed(1);
        pen = true; run++;
      });
      end();
      if (!d) return;
      var path = document.createElementNS(SVG, 'path');
      path.setAttribute('d', d); path.setAttribute('fill', 'none'); path.setAttribute('stroke', s.color);
      path.setAttribute('stroke-width', s.width || 1.5); path.setAttribute('stroke-linejoin', 'round'); path.setAttribute('stroke-linecap', 'round');
      if (s.dash) path.setAttribute('stroke-dasharray', '4 3');
      svg.appendChild(path);
    });
  }
  function short(v) { return v >= 1e6 ? (v / 1e6) + 'M' : v >= 1e3 ? (v / 1e3) + 'k' : String(Math.round(v * 100) / 100); }
  function niceMax(v) {
    var p = Math.pow(10, Math.floor(Math.log10(v))), m = v / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
  }
  function text(svg, x, y, s, anchor) {
    var t = document.createElementNS(SVG, 'text');
    t.setAttribute('x', x); t.setAttribute('y', y); t.setAttribute('text-anchor', anchor); t.textContent = s; svg.appendChild(t);
  }

  // --- pools ---------------------------------------------------------------------------------
  function poolCard(name) {
    var dl = el('dl', { className: 'grid' }, [
      ['limit', 'limit'], ['active', 'active'], ['pending', 'pending'], ['held', 'held'],
      ['max running', 'maxConcurrency'], ['max waiting', 'maxQueueSize'], ['completed', 'completed'], ['failed', 'failed'], ['rejected', 'rejected'],
    ].map(function (r) { return el('div', null, [el('dt', { text: r[0] }), el('dd', { 'data-field': r[1], text: '–' })]); }));
    var run = el('div', { className: 'meter', 'data-meter': 'running' }, [el('span', { 'data-part': 'active' }), el('span', { className: 'mark', 'data-part': 'limit' })]);
    run.children[0].style.background = C.active;
    var cap = el('div', { className: 'meter', 'data-meter': 'capacity' }, [el('span', { 'data-part': 'active' }), el('span', { 'data-part': 'pending' }), el('span', { 'data-part': 'held' }), el('span', { className: 'mark', 'data-part': 'mc' })]);
    cap.children[0].style.background = C.active; cap.children[1].style.background = C.pending; cap.children[2].style.background = C.held;
    return el('article', { className: 'card pool', 'data-pool': name }, [
      el('header', null, [el('h3', { text: name }), el('span', { className: 'badge', 'data-field': 'saturated', text: '–' }), el('span', { className: 'badge', 'data-field': 'mode', text: '–' })]),
      dl,
      el('div', { className: 'meter-label' }, [el('span', { text: 'running: active, limit (mark), max running' }), f('runningText')]), run,
      el('div', { className: 'meter-label' }, [el('span', { text: 'places: active + pending + held, max running (mark), + max waiting' }), f('capacityText')]), cap,
      el('p', { className: 'meta', 'data-field': 'adaptive', hidden: '' }),
      el('div', { className: 'charts one' }, [chartBox('slots over time', 'slots', [['limit', C.limit], ['max concurrency', C.max], ['active', C.active], ['pending', C.pending], ['held', C.held]])]),
    ]);
  }
  function renderPool(root, p) {
    ['limit', 'active', 'pending', 'held', 'maxConcurrency', 'maxQueueSize', 'completed', 'failed', 'rejected'].forEach(function (k) { set(root, k, String(p[k])); });
    badge(root, 'saturated', p.closed ? 'closed' : p.saturated ? 'saturated' : 'room', p.closed ? 'bad' : p.saturated ? 'warn' : 'ok');
    badge(root, 'mode', p.adaptive ? 'adaptive ' + p.adaptive.algorithm : 'fixed limit', p.adaptive ? 'info' : '');
    var run = root.querySelector('[data-meter="running"]');
    run.children[0].style.width = (100 * Math.min(p.active, p.maxConcurrency) / p.maxConcurrency) + '%';
    run.children[1].style.left = 'calc(' + (100 * p.limit / p.maxConcurrency) + '% - 2px)';
    set(root, 'runningText', p.active + ' / ' + p.limit + ' of ' + p.maxConcurrency);
    var total = p.maxConcurrency + p.maxQueueSize, cap = root.querySelector('[data-meter="capacity"]'), left = 0;
    [p.active, p.pending, p.held].forEach(function (v, i) {
      var w = 100 * v / total; cap.children[i].style.left = left + '%'; cap.children[i].style.width = w + '%'; left += w;
    });
    cap.children[3].style.left = 'calc(' + (100 * p.maxConcurrency / total) + '% - 1px)';
    set(root, 'capacityText', (p.active + p.pending + p.held) + ' of ' + total);
    var a = get(root, 'adaptive');
    if (p.adaptive) {
      a.hidden = false;
      set(root, 'adaptive', 'adaptive (' + p.adaptive.algorithm + '): limit ' + p.limit + ' between ' + p.adaptive.min + ' and ' + p.maxConcurrency +
        ', estimate ' + p.adaptive.estimate.toFixed(2) + ', window latency ' + fixed(p.adaptive.latencyMs) + ' ms, no-load ' + fixed(p.adaptive.noLoadLatencyMs) + ' ms, ' + p.adaptive.windows + ' windows');
    } else a.hidden = true;
    var name = p.name;
    var pick = function (k) { return function (s) { var q = byName(s.pools, name); return q ? q[k] : null; }; };
    draw(root.querySelector('[data-chart="slots"]'), history, [
      { get: pick('maxConcurrency'), color: C.max, width: 1 }, { get: pick('limit'), color: C.limit, dash: true },
      { get: pick('active'), color: C.active }, { get: pick('pending'), color: C.pending }, { get: pick('held'), color: C.held },
    ], 1);
  }

  // --- consumers -----------------------------------------------------------------------------
  var ROWS = [['handled', 'handled'], ['retried', 'retried'], ['dead-lettered', 'deadLettered'], ['given back', 'givenBack'], ['failed attempts', 'failed'], ['overloaded', 'overloaded'], ['gated', 'gated']];
  function consumerCard(name) {
    var body = el('tbody', null, ROWS.map(function (r) {
      return el('tr', null, [el('td', { text: r[0] }), el('td', { 'data-field': r[1], text: '–' }), el('td', { 'data-field': 'rate-' + r[1], text: '–' })]);
    }));
    return el('article', { className: 'card consumer', 'data-consumer': name }, [
      el('header', null, [el('h3', { text: name }), el('span', { className: 'badge', 'data-field': 'state', text: '–' }),
        el('span', { className: 'badge', 'data-field': 'health', text: '–' }), el('span', { className: 'badge', 'data-field': 'paused', text: '–' }),
        el('span', { className: 'badge', 'data-field': 'stalled', text: 'stalled', hidden: '' })]),
      el('p', { className: 'meta' }, ['source ', el('b', { 'data-field': 'source', text: '–' }), ' · pool ', el('b', { 'data-field': 'pool', text: '–' }),
        ' · connection ', el('b', { 'data-field': 'conn', text: '–' }), ' · in flight ', el('b', { 'data-field': 'inFlight', text: '–' }),
        ' · delayed retries ', el('b', { 'data-field': 'delayedRetries', text: '–' })]),
      el('p', { className: 'meta' }, ['paused by ', el('b', { 'data-field': 'pausedBy', text: '–' }), ' · breakers ', el('span', { 'data-field': 'breakers', text: '–' })]),
      el('p', { className: 'meta', 'data-field': 'healthReasons', hidden: '' }),
      el('table', { className: 'counts' }, [el('thead', null, [el('tr', null, [el('th', { text: '' }), el('th', { text: 'total' }), el('th', { text: 'per second' })])]), body]),
      el('p', { className: 'meta' }, ['handler latency p50 ', el('b', { 'data-field': 'p50', text: '–' }), ' · p95 ', el('b', { 'data-field': 'p95', text: '–' }),
        ' · p99 ', el('b', { 'data-field': 'p99', text: '–' }), ' ms (', el('span', { 'data-field': 'latencySamples', text: '0' }), ' attempts in the last ',
        el('span', { 'data-field': 'latencyWindow', text: '–' }), ' s)']),
      el('p', { className: 'meta', 'data-field': 'batch', hidden: '' }, ['batches ', el('b', { 'data-field': 'batches', text: '–' }), ' (', el('span', { 'data-field': 'rate-batches', text: '–' }),
        '/s) · mean size ', el('b', { 'data-field': 'batchMean', text: '–' }), ' · last ', el('b', { 'data-field': 'batchLast', text: '–' }),
        ' in ', el('span', { 'data-field': 'batchLastMs', text: '–' }), ' ms · gathering now ', el('b', { 'data-field': 'batching', text: '–' })]),
      el('div', { className: 'charts' }, [
        chartBox('messages per second', 'rates', [['handled', C.handled], ['retried', C.retried], ['dead-lettered', C.deadLettered], ['given back', C.givenBack], ['paused', '#fbe7b0']]),
        chartBox('handler latency, ms', 'latency', [['p50', C.p50], ['p95', C.p95], ['p99', C.p99]]),
      ]),
      el('details', { open: '' }, [el('summary', null, ['last errors (', el('span', { 'data-field': 'errorCount', text: '0' }), ')']), el('ol', { className: 'errors', 'data-field': 'errors' })]),
    ]);
  }
  function renderConsumer(root, c) {
    badge(root, 'state', c.state, c.state === 'running' ? 'ok' : c.state === 'stopping' ? 'warn' : 'bad');
    badge(root, 'health', c.health, c.health === 'ok' ? 'ok' : c.health === 'degraded' ? 'warn' : 'bad');
    badge(root, 'paused', c.paused ? 'paused' : 'consuming', c.paused ? 'warn' : 'ok');
    get(root, 'stalled').hidden = !c.stalled;
    root.classList.toggle('paused', c.paused);
    root.classList.toggle('down', c.health === 'down');
    set(root, 'source', c.source); set(root, 'pool', c.pool); set(root, 'conn', c.connection);
    set(root, 'inFlight', String(c.inFlight)); set(root, 'delayedRetries', String(c.delayedRetries));
    set(root, 'pausedBy', c.pausedBy.length ? c.pausedBy.join(', ') : '–');
    var hr = get(root, 'healthReasons'); hr.hidden = c.healthReasons.length === 0; set(root, 'healthReasons', c.healthReasons.join('; '));
    var br = get(root, 'breakers');
    if (c.breakers.length === 0) set(root, 'breakers', '–');
    else {
      var text = c.breakers.map(function (n) { var b = byName(lastBreakers, n); return n + ' ' + (b ? b.state : '?'); }).join(', ');
      set(root, 'breakers', text);
      var open = c.breakers.some(function (n) { var b = byName(lastBreakers, n); return b && b.state !== 'closed'; });
      br.className = 'badge ' + (open ? 'bad' : 'ok');
    }
    ROWS.forEach(function (r) {
      set(root, r[1], String(c.counters[r[1]]));
      set(root, 'rate-' + r[1], perSecond(c.rates ? c.rates[r[1]] : null));
    });
    set(root, 'p50', c.latency ? fixed(c.latency.p50) : '–'); set(root, 'p95', c.latency ? fixed(c.latency.p95) : '–'); set(root, 'p99', c.latency ? fixed(c.latency.p99) : '–');
    set(root, 'latencySamples', String(c.latency ? c.latency.samples : 0)); set(root, 'latencyWindow', String(conf.latencyWindowMs / 1000));
    var b = get(root, 'batch');
    b.hidden = !c.batch;
    if (c.batch) {
      set(root, 'batches', String(c.counters.batches)); set(root, 'rate-batches', perSecond(c.rates ? c.rates.batches : null));
      set(root, 'batchMean', c.batch.calls ? c.batch.meanSize.toFixed(1) : '–'); set(root, 'batchLast', c.batch.calls ? String(c.batch.lastSize) : '–');
      set(root, 'batchLastMs', c.batch.calls ? fixed(c.batch.lastDurationMs) : '–'); set(root, 'batching', String(c.batching));
    }
    var ol = get(root, 'errors'), key = c.errors.map(function (e) { return e.at + e.message; }).join('|');
    if (ol.getAttribute('data-key') !== key) {
      ol.setAttribute('data-key', key);
      while (ol.firstChild) ol.removeChild(ol.firstChild);
      c.errors.slice().reverse().forEach(function (e) {
        var what = e.kind === 'handler' ? 'attempt ' + e.attempt + ' → ' + e.next : 'during ' + e.kind;
        ol.appendChild(el('li', { 'data-error': '' }, [el('span', { className: 'when', text: clock(e.at) + ' ' }), el('b', { text: e.name + ': ' }), e.message,
          el('span', { className: 'when', text: ' (' + (e.messageId ? 'message ' + e.messageId + ', ' : '') + what + ')' })]));
      });
    }
    set(root, 'errorCount', String(c.errors.length));
    var name = c.name;
    var pick = function (fn) { return function (s) { var q = byName(s.consumers, name); return q ? fn(q) : null; }; };
    var rate = function (k) { return pick(function (q) { return q.rates ? q.rates[k] : null; }); };
    var lat = function (k) { return pick(function (q) { return q.latency ? q.latency[k] : null; }); };
    draw(root.querySelector('[data-chart="rates"]'), history, [
      { get: rate('givenBack'), color: C.givenBack }, { get: rate('deadLettered'), color: C.deadLettered },
      { get: rate('retried'), color: C.retried }, { get: rate('handled'), color: C.handled },
    ], 1, pick(function (q) { return q.paused; }));
    draw(root.querySelector('[data-chart="latency"]'), history, [
      { get: lat('p50'), color: C.p50 }, { get: lat('p95'), color: C.p95 }, { get: lat('p99'), color: C.p99 },
    ], 1);
  }

  // --- breakers ------------------------------------------------------------------------------
  var lastBreakers = [];
  function renderBreakers(list) {
    lastBreakers = list;
    document.getElementById('breakers-section').hidden = list.length === 0;
    var body = document.getElementById('breakers');
    list.forEach(function (b) {
      var row = body.querySelector('[data-breaker="' + CSS.escape(b.name) + '"]');
      if (!row) {
        row = el('tr', { 'data-breaker': b.name }, [el('td', { text: b.name }), el('td', null, [f('state')]), el('td', null, [f('failureRate')]), el('td', null, [f('calls')]),
          el('td', null, [f('failures')]), el('td', null, [f('consecutiveFailures')]), el('td', null, [f('opened')]), el('td', null, [f('probes')])]);
        body.appendChild(row);
      }
      badge(row, 'state', b.state, b.state === 'closed' ? 'ok' : b.state === 'open' ? 'bad' : 'warn');
      set(row, 'failureRate', (100 * b.failureRate).toFixed(0) + ' %'); set(row, 'calls', String(b.calls)); set(row, 'failures', String(b.failures));
      set(row, 'consecutiveFailures', String(b.consecutiveFailures)); set(row, 'opened', String(b.opened));
      set(row, 'probes', b.probes.left + ' / ' + b.probes.inFlight + ' / ' + b.probes.succeeded);
    });
  }

  function place(container, attr, name, make) {
    var node = container.querySelector('[' + attr + '="' + CSS.escape(name) + '"]');
    if (!node) { node = make(name); container.appendChild(node); }
    return node;
  }
  function render(s) {
    lastAt = Date.now();
    set(document, 'updated', clock(s.t));
    renderBreakers(s.breakers);
    var pools = document.getElementById('pools'), consumers = document.getElementById('consumers');
    var empty = pools.querySelector('.empty'); if (empty) empty.remove();
    s.pools.forEach(function (p) { renderPool(place(pools, 'data-pool', p.name, poolCard), p); });
    s.consumers.forEach(function (c) { renderConsumer(place(consumers, 'data-consumer', c.name, consumerCard), c); });
  }
  function keep(s) {
    history.push(s);
    var cut = s.t - conf.historySeconds * 1000;
    while (history.length && history[0].t < cut) history.shift();
  }

  var es = new EventSource(base + '/events');
  es.addEventListener('hello', function (e) {
    var d = JSON.parse(e.data);
    conf = { intervalMs: d.intervalMs, historySeconds: d.historySeconds, latencyWindowMs: d.latencyWindowMs };
    set(document, 'window', 'one sample every ' + d.intervalMs / 1000 + ' s, charts of the last ' + Math.round(d.historySeconds / 60 * 10) / 10 + ' min');
    history = d.history.slice();
    render(d.current);
  });
  es.addEventListener('sample', function (e) {
    var s = JSON.parse(e.data);
    keep(s);
    render(s);
  });
  es.onopen = function () { badge(document, 'connection', 'live', 'ok'); };
  es.onerror = function () { badge(document, 'connection', es.readyState === 2 ? 'disconnected' : 'reconnecting…', 'bad'); };
  setInterval(function () {
    if (lastAt && es.readyState === 1 && Date.now() - lastAt > 3 * conf.intervalMs + 1000) badge(document, 'connection', 'stale', 'warn');
  }, 1000);
})();
</script>
</body>
</html>
`;
