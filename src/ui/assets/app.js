// The flow map page: reads its filters from the URL, draws /api/graph with cytoscape, keeps
// it live from /api/events, and shows an edge's flows and the policy's explanation on click.
// The layout is computed in a Web Worker (layout-worker.js); the page first draws a grid so
// that something is on screen at once, then moves the nodes to the worker's positions.
import cytoscape from '/vendor/cytoscape.mjs';

const FILTERS = ['by', 'verdict', 'label', 'reason', 'port', 'since', 'until', 'net'];
const $ = (sel) => document.querySelector(sel);
const form = $('#filters');
const statusEl = $('#status');

// The token (a non-loopback listener) comes once in the URL; it is kept for this tab and
// taken out of the address bar, so that a copied link does not carry it.
const initial = new URLSearchParams(location.search);
if (initial.has('token')) {
  sessionStorage.setItem('tessera-token', initial.get('token'));
  initial.delete('token');
  history.replaceState(null, '', `${location.pathname}${initial.size ? '?' + initial : ''}`);
}
const token = sessionStorage.getItem('tessera-token');

function state() {
  return new URLSearchParams(location.search);
}

function apiParams(extra = {}, drop = []) {
  const p = new URLSearchParams();
  const s = state();
  for (const k of FILTERS) if (s.get(k) && !drop.includes(k)) p.set(k, s.get(k));
  for (const [k, v] of Object.entries(extra)) p.set(k, v);
  if (token) p.set('token', token);
  return p;
}

async function getJson(path, params) {
  const res = await fetch(`${path}?${params}`);
  const body = await res.json();
  if (!res.ok) throw new Error(body?.error?.message ?? `${res.status}`);
  return body;
}

function fillForm() {
  const s = state();
  for (const k of FILTERS) if (form.elements[k] && k !== 'verdict') form.elements[k].value = s.get(k) ?? '';
  const v = (s.get('verdict') ?? '').split(',');
  for (const box of form.querySelectorAll('input[name=verdict]')) box.checked = v.includes(box.value);
}

function formToUrl() {
  const p = new URLSearchParams();
  for (const k of FILTERS) {
    if (k === 'verdict') continue;
    const v = form.elements[k]?.value.trim();
    if (v) p.set(k, v);
  }
  const v = [...form.querySelectorAll('input[name=verdict]:checked')].map((b) => b.value);
  if (v.length) p.set('verdict', v.join(','));
  const edge = state().get('edge');
  if (edge) p.set('edge', edge);
  history.pushState(null, '', `${location.pathname}${p.size ? '?' + p : ''}`);
}

const STYLE = [
  { selector: 'node', style: { label: 'data(label)', 'font-size': 11, 'text-valign': 'bottom', 'text-margin-y': 4, width: 26, height: 26, 'background-color': '#3f6cc4', 'border-width': 1, 'border-color': '#27467f', 'min-zoomed-font-size': 7 } },
  { selector: 'node.address', style: { shape: 'diamond', 'background-color': '#8a93a6', 'border-color': '#5b6375' } },
  { selector: 'node.host', style: { shape: 'hexagon', 'background-color': '#5d4037', 'border-color': '#3e2723' } },
  { selector: 'node.island', style: { shape: 'round-rectangle', 'background-color': '#eef1f7', 'background-opacity': 0.6, 'border-color': '#c5cbd8', 'border-style': 'dashed', label: 'data(label)', 'text-valign': 'top', 'font-size': 12, color: '#5b6375' } },
  { selector: 'edge', style: { width: 'mapData(weight, 0, 6, 1.5, 6)', 'curve-style': 'bezier', 'target-arrow-shape': 'triangle', 'arrow-scale': 0.9, label: 'data(connections)', 'font-size': 9, 'text-background-color': '#fff', 'text-background-opacity': 0.8, 'min-zoomed-font-size': 8 } },
  { selector: 'edge.allowed', style: { 'line-color': '#2e7d32', 'target-arrow-color': '#2e7d32' } },
  { selector: 'edge.refused', style: { 'line-color': '#c62828', 'target-arrow-color': '#c62828' } },
  { selector: 'edge.audit', style: { 'line-color': '#ef6c00', 'target-arrow-color': '#ef6c00', 'line-style': 'dashed' } },
  { selector: 'edge.learning', style: { 'line-color': '#6a1b9a', 'target-arrow-color': '#6a1b9a', 'line-style': 'dotted' } },
  { selector: 'edge.mixed', style: { 'source-arrow-shape': 'circle', 'source-arrow-color': '#ef6c00' } },
  { selector: ':selected', style: { 'overlay-color': '#1565c0', 'overlay-opacity': 0.25, 'overlay-padding': 4 } },
];

// Many edges: straight lines without count labels draw several times faster than labelled curves.
const LARGE_EDGES = 400;
const SMALL_EDGE_STYLE = { 'curve-style': 'bezier', label: 'data(connections)' };
const LARGE_EDGE_STYLE = { 'curve-style': 'straight', label: '' };

const cy = cytoscape({ container: $('#map'), style: STYLE, wheelSensitivity: 0.3, minZoom: 0.05, maxZoom: 3, textureOnViewport: true, hideEdgesOnViewport: true });
const perf = { renders: 0 };
window.__tessera = { cy, perf };

function edgeClasses(e) {
  const kinds = Object.entries(e.byClass).filter(([, n]) => n > 0).length;
  return kinds > 1 ? `${e.verdict} mixed` : e.verdict;
}

function edgeData(e) {
  return { id: e.id, source: e.source, target: e.target, connections: e.connections, records: e.records, verdict: e.verdict, byClass: e.byClass, ports: e.ports, reasons: e.reasons, last: e.last, weight: Math.log2(1 + e.connections) };
}

function elementsOf(g) {
  const els = [];
  for (let i = 0; i < g.islands.length; i++) if (g.islands[i].length > 1) els.push({ group: 'nodes', data: { id: `island:${i}`, label: `island ${i + 1} · ${g.islands[i].length} groups` }, classes: 'island' });
  for (const n of g.nodes) {
    const data = { id: n.id, label: n.label, kind: n.kind, pus: n.pus, hosts: n.hosts };
    if (n.island >= 0 && g.islands[n.island].length > 1) data.parent = `island:${n.island}`;
    els.push({ group: 'nodes', data, classes: n.kind });
  }
  for (const e of g.edges) els.push({ group: 'edges', data: edgeData(e), classes: edgeClasses(e) });
  return els;
}

let worker = null;
let layoutSeq = 0;
function workerLayout(g) {
  if (!worker) worker = new Worker('/assets/layout-worker.js', { type: 'module' });
  const id = ++layoutSeq;
  return new Promise((resolve, reject) => {
    const onMessage = (ev) => {
      if (ev.data.id !== id) return;
      worker.removeEventListener('message', onMessage);
      ev.data.error ? reject(new Error(ev.data.error)) : resolve(ev.data.positions);
    };
    worker.addEventListener('message', onMessage);
    worker.postMessage({ id, nodes: g.nodes.map((n) => ({ id: n.id })), edges: g.edges.map((e) => ({ source: e.source, target: e.target })) });
  });
}

function nextFrame() {
  return new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
}

let current = null; // the graph on screen
let seq = 0;

function sameNodes(a, b) {
  if (!a || a.nodes.length !== b.nodes.length || a.islands.length !== b.islands.length) return false;
  for (let i = 0; i < a.nodes.length; i++) if (a.nodes[i].id !== b.nodes[i].id || a.nodes[i].island !== b.nodes[i].island) return false;
  return true;
}

async function draw(g) {
  const mine = ++seq;
  if (sameNodes(current, g)) {
    // Same groups: update edges in place, keep the layout (a live update must not jump).
    cy.batch(() => {
      const keep = new Set(g.edges.map((e) => e.id));
      cy.edges().forEach((e) => { if (!keep.has(e.id())) e.remove(); });
      for (const e of g.edges) {
        const el = cy.getElementById(e.id);
        if (el.nonempty()) {
          el.data(edgeData(e));
          el.classes(edgeClasses(e));
        } else cy.add({ group: 'edges', data: edgeData(e), classes: edgeClasses(e) });
      }
    });
    current = g;
    return;
  }
  current = g;
  const t0 = performance.now();
  document.body.dataset.state = 'layout';
  performance.mark('tessera:graph');
  // The worker starts at once and lays out while the page draws the grid.
  const layoutDone = workerLayout(g).catch((err) => {
    statusEl.textContent = `layout failed (${err.message}); showing a grid`;
    return null;
  });
  cy.container().classList.toggle('large', g.edges.length > LARGE_EDGES);
  cy.style().selector('edge').style(g.edges.length > LARGE_EDGES ? LARGE_EDGE_STYLE : SMALL_EDGE_STYLE).update();
  cy.elements().remove();
  cy.add(elementsOf(g));
  performance.mark('tessera:added');
  // A grid at once: the first render does not wait for the layout.
  cy.nodes(':childless').layout({ name: 'grid', animate: false, fit: true, avoidOverlap: false }).run();
  performance.mark('tessera:grid');
  await nextFrame();
  if (mine !== seq) return;
  perf.firstRender = performance.now() - t0;
  perf.firstRenderAt ??= performance.now(); // since navigation start: what bench/ui.bench.ts reports
  const positions = await layoutDone;
  if (mine !== seq) return;
  if (positions) {
    cy.batch(() => cy.nodes(':childless').forEach((n) => { const p = positions[n.id()]; if (p) n.position(p); }));
  }
  fitView();
  await nextFrame();
  if (mine !== seq) return;
  perf.interactive = performance.now() - t0;
  perf.interactiveAt ??= performance.now();
  perf.renders++;
  document.body.dataset.state = 'ready';
}

/** Fit the map, but do not blow a handful of nodes up to fill the screen. */
function fitView() {
  cy.resize();
  cy.fit(undefined, 30);
  if (cy.zoom() > 1.4) {
    cy.zoom(1.4);
    cy.center();
  }
}

function summary(g) {
  const refused = g.edges.filter((e) => e.verdict === 'refused').length;
  const s = state();
  const live = s.get('until') ? 'history' : 'live';
  return `${g.nodes.length} groups · ${g.edges.length} edges (${refused} refused) · ${g.records} records · ${live}`;
}

async function refresh() {
  try {
    const g = await getJson('/api/graph', apiParams());
    await draw(g);
    statusEl.textContent = summary(g);
    statusEl.classList.remove('error');
    const edge = state().get('edge');
    if (edge && cy.getElementById(edge).nonempty() && $('#details').hidden) await showEdge(edge);
  } catch (err) {
    statusEl.textContent = `cannot load the map: ${err.message}`;
    statusEl.classList.add('error');
    document.body.dataset.state = 'error';
  }
}

function text(tag, value, cls) {
  const el = document.createElement(tag);
  el.textContent = value;
  if (cls) el.className = cls;
  return el;
}

function renderExplanation(x) {
  const box = $('#explanation');
  box.replaceChildren();
  if (!x) return;
  if (x.error) return box.append(text('p', `no explanation: ${x.error}`, 'error'));
  box.append(text('h3', 'why (current policy, latest flow)'));
  const d = x.decision ?? {};
  box.append(text('p', `decision: ${d.allow ? (d.audit ? 'allowed in audit mode (would refuse)' : 'allow') : 'refuse'} — rule ${d.ruleId ?? '?'}`, 'decision'));
  const ol = document.createElement('ol');
  for (const step of x.chain ?? []) {
    const li = text('li', `${step.direction} ${step.ruleId}${step.line ? ` (line ${step.line})` : ''}: ${step.matched ? 'matches' : 'no'} — ${step.why}`, step.matched ? 'matched' : '');
    ol.append(li);
  }
  box.append(ol);
}

async function showEdge(id) {
  const el = cy.getElementById(id);
  const s = state();
  if (s.get('edge') !== id) {
    s.set('edge', id);
    history.replaceState(null, '', `${location.pathname}?${s}`);
  }
  const panel = $('#details');
  if (panel.hidden) {
    panel.hidden = false;
    fitView();
  }
  panel.dataset.edge = id;
  panel.dataset.state = 'loading';
  $('#edge-title').textContent = el.nonempty() ? `${el.source().data('label')} → ${el.target().data('label')}` : id;
  try {
    const body = await getJson('/api/flows', apiParams({ edge: id, limit: '100' }));
    const by = el.nonempty() ? el.data('byClass') : {};
    $('#edge-summary').textContent = `${body.total} records · ${Object.entries(by).filter(([, n]) => n).map(([k, n]) => `${n} ${k}`).join(', ')} · ports ${el.nonempty() ? el.data('ports').join(', ') : ''}`;
    renderExplanation(body.explanation);
    const tbody = $('#flows tbody');
    tbody.replaceChildren();
    for (const f of body.flows) {
      const tr = document.createElement('tr');
      tr.dataset.class = f.class;
      tr.append(text('td', new Date(f.time).toLocaleTimeString()), text('td', `${f.direction} ${f.stage}`), text('td', f.class, f.class), text('td', f.reason), text('td', f.ruleId), text('td', String(f.direction === 'ingress' ? f.localPort : f.remotePort)));
      tbody.append(tr);
    }
    panel.dataset.state = 'ready';
  } catch (err) {
    $('#edge-summary').textContent = `cannot load its flows: ${err.message}`;
    panel.dataset.state = 'error';
  }
}

function hideEdge() {
  $('#details').hidden = true;
  fitView();
  const s = state();
  s.delete('edge');
  history.replaceState(null, '', `${location.pathname}${s.size ? '?' + s : ''}`);
}

cy.on('tap', 'edge', (ev) => void showEdge(ev.target.id()));
$('#close-details').addEventListener('click', hideEdge);
form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  formToUrl();
  restart();
});
$('#copy-link').addEventListener('click', () => void navigator.clipboard?.writeText(location.href));
window.addEventListener('popstate', () => {
  fillForm();
  restart();
});

// Live: one event stream with the same filters; new records are batched into one refetch a second.
let events = null;
let pending = null;
function follow() {
  events?.close();
  events = null;
  if (state().get('until')) return;
  events = new EventSource(`/api/events?${apiParams({}, ['since', 'until'])}`);
  events.addEventListener('flow', () => {
    if (pending) return;
    pending = setTimeout(async () => {
      pending = null;
      await refresh();
      const open = $('#details');
      if (!open.hidden && open.dataset.edge) await showEdge(open.dataset.edge);
    }, 1000);
  });
}

function restart() {
  current = null;
  $('#details').hidden = true;
  void refresh();
  follow();
}

fillForm();
restart();
