// Lays the map out off the page's main thread: each island (connected component) gets its own
// force-directed layout (cytoscape's built-in `cose`, headless), small islands a circle,
// and the islands are packed in rows, largest first. In: { nodes: [{id}], edges: [{source,
// target}] }. Out: { positions: { id: {x, y} } }.
import cytoscape from '/vendor/cytoscape.mjs';

const COSE_MAX = 250; // above this, an island is laid out in rings by degree (cose is quadratic)

function componentsOf(nodes, edges) {
  const parent = new Map(nodes.map((n) => [n.id, n.id]));
  const find = (x) => {
    while (parent.get(x) !== x) {
      parent.set(x, parent.get(parent.get(x)));
      x = parent.get(x);
    }
    return x;
  };
  for (const e of edges) {
    if (!parent.has(e.source) || !parent.has(e.target)) continue;
    const a = find(e.source), b = find(e.target);
    if (a !== b) parent.set(a, b);
  }
  const groups = new Map();
  for (const n of nodes) {
    const r = find(n.id);
    if (!groups.has(r)) groups.set(r, []);
    groups.get(r).push(n.id);
  }
  return [...groups.values()].sort((a, b) => b.length - a.length);
}

function layoutIsland(ids, edges) {
  const pos = {};
  if (ids.length === 1) {
    pos[ids[0]] = { x: 0, y: 0 };
    return pos;
  }
  if (ids.length <= 3) {
    ids.forEach((id, i) => (pos[id] = { x: i * 140, y: (i % 2) * 60 }));
    return pos;
  }
  const set = new Set(ids);
  const els = ids.map((id) => ({ group: 'nodes', data: { id } }));
  for (const e of edges) if (set.has(e.source) && set.has(e.target) && e.source !== e.target) els.push({ group: 'edges', data: { source: e.source, target: e.target } });
  const cy = cytoscape({ headless: true, styleEnabled: false, elements: els });
  const opts =
    ids.length <= COSE_MAX
      ? { name: 'cose', animate: false, randomize: true, fit: false, idealEdgeLength: () => 110, nodeRepulsion: () => 90000, numIter: ids.length > 80 ? 400 : 1000, boundingBox: { x1: 0, y1: 0, w: 200 * Math.sqrt(ids.length), h: 200 * Math.sqrt(ids.length) } }
      : { name: 'concentric', animate: false, fit: false, concentric: (n) => n.degree(), levelWidth: () => 4, minNodeSpacing: 40, avoidOverlap: false };
  cy.layout(opts).run();
  cy.nodes().forEach((n) => (pos[n.id()] = { ...n.position() }));
  cy.destroy();
  return pos;
}

function bounds(pos) {
  let x1 = Infinity, y1 = Infinity, x2 = -Infinity, y2 = -Infinity;
  for (const p of Object.values(pos)) {
    x1 = Math.min(x1, p.x); y1 = Math.min(y1, p.y); x2 = Math.max(x2, p.x); y2 = Math.max(y2, p.y);
  }
  return { x1, y1, w: x2 - x1, h: y2 - y1 };
}

export function layout({ nodes, edges }) {
  const islands = componentsOf(nodes, edges).map((ids) => {
    const pos = layoutIsland(ids, edges);
    return { pos, b: bounds(pos) };
  });
  const gap = 120;
  const area = islands.reduce((a, i) => a + (i.b.w + gap) * (i.b.h + gap), 0);
  const rowWidth = Math.max(Math.sqrt(area) * 1.3, islands[0] ? islands[0].b.w + gap : 0);
  const positions = {};
  let x = 0, y = 0, rowH = 0;
  for (const { pos, b } of islands) {
    if (x > 0 && x + b.w > rowWidth) {
      x = 0;
      y += rowH + gap;
      rowH = 0;
    }
    for (const [id, p] of Object.entries(pos)) positions[id] = { x: x + p.x - b.x1, y: y + p.y - b.y1 };
    x += b.w + gap;
    rowH = Math.max(rowH, b.h);
  }
  return positions;
}

self.onmessage = (ev) => {
  try {
    self.postMessage({ id: ev.data.id, positions: layout(ev.data) });
  } catch (err) {
    self.postMessage({ id: ev.data.id, error: String(err && err.message ? err.message : err) });
  }
};
