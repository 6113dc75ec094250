import { describe, expect, it } from 'vitest';
import { EdgeTable, aggregateCidrs, compare, diff, suggest, type Observed } from '../../../src/learn/index.js';
import { compilePolicy, loadPolicy } from '../../../src/policy/index.js';

const T0 = Date.UTC(2026, 11, 6, 5, 0, 0);
let n = 0;

/** A flow record as the worker makes it: ingress = we are the server (local), egress = we are the client. */
function rec(p: { dir: 'ingress' | 'egress'; local: string[]; localPu: string; remote: string[] | null; remotePu?: string; port: number; addr?: string; time?: number; verdict?: 'accept' | 'reject'; mode?: string }): Observed {
  n++;
  return {
    time: p.time ?? T0 + n,
    direction: p.dir,
    verdict: p.verdict ?? 'accept',
    localPu: p.localPu,
    localLabels: Object.freeze([...p.local]),
    localPort: p.dir === 'ingress' ? p.port : 40000 + (n % 20000),
    remoteAddr: p.addr ?? '10.213.160.9',
    remotePort: p.dir === 'ingress' ? 40000 + (n % 20000) : p.port,
    remotePu: p.remotePu ?? null,
    remoteLabels: p.remote ? Object.freeze([...p.remote]) : null,
    ...(p.mode ? { mode: p.mode } : {}),
  };
}

const web = (i: number, version = '1.0.0'): string[] => ['app=web', 'env=prod', `version=${version}`, `@sys:name=web-${i}`, `@sys:image=shop/web:${version}`];
const api = (i: number, version = '2.3.1'): string[] => ['app=api', 'env=prod', `version=${version}`, `@sys:name=api-${i}`];
const db = ['app=db', 'env=prod', '@sys:name=db-0'];

/** A three-tier shop: 14 api replicas over two versions, 3 web replicas, renamed containers, one resolver. */
function shop(order: 'forward' | 'reverse' = 'forward'): EdgeTable {
  const recs: Observed[] = [];
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 14; j++) {
      const v = j < 7 ? '2.3.1' : '2.4.0';
      recs.push(rec({ dir: 'ingress', local: api(j, v), localPu: `api-${j}`, remote: web(i), remotePu: `web-${i}`, port: 8080 }));
      recs.push(rec({ dir: 'egress', local: web(i), localPu: `web-${i}`, remote: api(j, v), remotePu: `api-${j}`, port: 8080 }));
    }
  }
  for (let j = 0; j < 14; j++) {
    for (let k = 0; k < 3; k++) recs.push(rec({ dir: 'ingress', local: db, localPu: 'db-0', remote: api(j, j < 7 ? '2.3.1' : '2.4.0'), remotePu: `api-${j}`, port: 5432 }));
    recs.push(rec({ dir: 'egress', local: api(j), localPu: `api-${j}`, remote: null, port: 53, addr: '10.213.169.53' }));
  }
  // A container recreated under a new name: same labels, new @sys:name, new PU id.
  recs.push(rec({ dir: 'egress', local: ['app=web', 'env=prod', 'version=1.0.0', '@sys:name=web-renamed', '@sys:image=shop/web:1.0.0'], localPu: 'web-new', remote: api(0), remotePu: 'api-0', port: 8080 }));
  // Browsers without Tessera.
  for (let b = 0; b < 20; b++) recs.push(rec({ dir: 'ingress', local: web(0), localPu: 'web-0', remote: null, port: 443, addr: `198.51.100.${b + 1}` }));
  // A refusal is never learnt.
  recs.push(rec({ dir: 'ingress', local: db, localPu: 'db-0', remote: web(0), remotePu: 'web-0', port: 5432, verdict: 'reject' }));
  const t = new EdgeTable();
  for (const r of order === 'forward' ? recs : recs.reverse()) t.observe(r);
  return t;
}

describe('EdgeTable', () => {
  it('records one edge per (client, server, server port, protocol), never the ephemeral port, and ignores refusals', () => {
    const t = new EdgeTable();
    for (let i = 0; i < 50; i++) t.observe(rec({ dir: 'ingress', local: db, localPu: 'db-0', remote: api(1), remotePu: 'api-1', port: 5432 }));
    t.observe(rec({ dir: 'ingress', local: db, localPu: 'db-0', remote: api(1), remotePu: 'api-1', port: 5432, verdict: 'reject' }));
    expect(t.size).toBe(1);
    const [e] = t.list();
    expect(e!.port).toBe(5432);
    expect(e!.ingress).toBe(50);
    expect(e!.clientPus).toEqual(['api-1']);
    expect(e!.serverPus).toEqual(['db-0']);
  });

  it('keeps its memory bound under a flood of distinct flows and counts what it left out', () => {
    const t = new EdgeTable(256);
    for (let i = 0; i < 5000; i++) t.observe(rec({ dir: 'ingress', local: db, localPu: 'db-0', remote: null, port: 1 + (i % 65535), addr: `10.213.${160 + (i % 10)}.${i % 250}` }));
    expect(t.size).toBe(256);
    expect(t.dropped).toBe(5000 - 256);
    // Existing edges keep counting when full.
    const first = t.list()[0]!;
    const before = first.ingress;
    t.observe(rec({ dir: 'ingress', local: db, localPu: 'db-0', remote: null, port: first.port, addr: (first.client as { addr: string }).addr }));
    expect(t.list()[0]!.ingress).toBe(before + 1);
    // PU ids per edge are bounded too.
    const u = new EdgeTable();
    for (let i = 0; i < 100; i++) u.observe(rec({ dir: 'ingress', local: db, localPu: 'db-0', remote: ['app=api'], remotePu: `api-${i}`, port: 5432 }));
    expect(u.list()[0]!.clientPus.length).toBe(16);
    expect(u.list()[0]!.morePus).toBe(84);
  });

  it('merges tables of several workers or hosts, and round-trips through JSON', () => {
    const a = new EdgeTable();
    const b = new EdgeTable();
    a.observe(rec({ dir: 'ingress', local: db, localPu: 'db-0', remote: api(1), remotePu: 'api-1', port: 5432, time: T0 + 10 }));
    b.observe(rec({ dir: 'egress', local: api(1), localPu: 'api-1', remote: db, remotePu: 'db-0', port: 5432, time: T0 + 5 }));
    b.observe(rec({ dir: 'egress', local: api(1), localPu: 'api-1', remote: db, remotePu: 'db-0', port: 5432, time: T0 + 20 }));
    const m = new EdgeTable();
    m.merge(a.drain()!);
    m.merge(JSON.parse(JSON.stringify(b.drain())));
    expect(a.drain()).toBeNull();
    expect(m.size).toBe(1);
    const e = m.list()[0]!;
    expect([e.ingress, e.egress, e.first, e.last]).toEqual([1, 2, T0 + 5, T0 + 20]);
    const back = EdgeTable.fromJSON(JSON.parse(JSON.stringify(m.toJSON())));
    expect(back.toJSON()).toEqual(m.toJSON());
    expect(() => EdgeTable.fromJSON({ version: 1, edges: [{ port: 70000 }] })).toThrow();
    expect(() => EdgeTable.fromJSON('nope')).toThrow();
  });
});

describe('suggest', () => {
  it('writes a policy that compiles, allows every observed edge and nothing else, with evidence', () => {
    const t = shop();
    const s = suggest(t.toJSON(), { now: T0 + 3600_000 });
    const r = compilePolicy(s.text);
    expect(r.ok, s.text).toBe(true);
    const d = diff(loadPolicy(s.text), t.toJSON());
    expect(d.refused).toEqual([]);
    expect(d.unused).toEqual([]);
    // Generalization: one group per app, whatever the replica, version or container name.
    expect(s.groups.map((g) => [g.name, g.selector])).toEqual([
      ['api', ['app=api', 'env=prod']],
      ['db', ['app=db', 'env=prod']],
      ['web', ['app=web', 'env=prod']],
    ]);
    const apiG = s.groups.find((g) => g.name === 'api')!;
    expect(apiG.evidence).toContain('stable across 14 PUs');
    expect(apiG.evidence).toContain('version version-like: dropped');
    expect(apiG.evidence).toContain('@sys:name per instance: dropped');
    expect(s.text).toContain('#   api {app: api, env: prod}: app, env stable across 14 PUs');
    // Server ports only; the resolver by address; browsers aggregated under the bound.
    expect(s.rules.map((x) => [x.id, x.ports])).toEqual([
      ['web-to-api', [8080]],
      ['api-to-db', [5432]],
      ['net-to-web-443', [443]],
      ['api-to-net-53', [53]],
    ]);
    const browsers = s.rules.find((x) => x.id === 'net-to-web-443')!;
    expect('networks' in browsers.from && browsers.from.networks.length).toBeLessThanOrEqual(8);
    expect(s.text).toContain('20 addresses seen, aggregated into');
    expect(s.text).toContain('toNetworks: [10.213.169.53]');
    // What was not observed is refused: web → db directly, api on another port.
    const p = loadPolicy(s.text);
    expect(p.ingress({ client: { labels: web(1) }, server: { labels: db }, port: 5432 }).ruleId).toBe('default:reject');
    expect(p.ingress({ client: { labels: web(1) }, server: { labels: api(3) }, port: 9090 }).allow).toBe(false);
  });

  it('covers new replicas, new versions and renamed containers without relearning', () => {
    const p = loadPolicy(suggest(shop().toJSON(), { now: T0 }).text);
    const newApi = ['app=api', 'env=prod', 'version=3.0.0', '@sys:name=api-rolled-77'];
    expect(p.ingress({ client: { labels: ['app=web', 'env=prod', 'version=9.9', '@sys:name=web-xyz'] }, server: { labels: newApi }, port: 8080 }).allow).toBe(true);
    expect(p.egress({ client: { labels: newApi }, server: { labels: db }, port: 5432 }).allow).toBe(true);
    // but not another environment's api
    expect(p.ingress({ client: { labels: ['app=api', 'env=staging'] }, server: { labels: db }, port: 5432 }).allow).toBe(false);
  });

  it('is deterministic: the same edges in any order give the same text', () => {
    const a = suggest(shop('forward').toJSON(), { now: T0 + 1000 }).text;
    const b = suggest(shop('reverse').toJSON(), { now: T0 + 1000 }).text;
    const merged = new EdgeTable();
    merged.merge(shop('reverse').toJSON());
    expect(b).toBe(a);
    expect(suggest(merged.toJSON(), { now: T0 + 1000 }).text).toBe(a);
  });

  it('flags rare and stale edges instead of leaving them out, and honours --since', () => {
    const t = shop();
    t.observe(rec({ dir: 'ingress', local: db, localPu: 'db-0', remote: ['app=backup'], remotePu: 'b-1', port: 5432, time: T0 - 30 * 86400_000 }));
    const s = suggest(t.toJSON(), { now: T0 + 1000 });
    const backup = s.rules.find((r) => r.id === 'backup-to-db')!;
    expect(backup.rare).toBe(true);
    expect(s.text).toMatch(/RARE: port 5432 seen 1 time, last seen 2026-11-06/);
    expect(suggest(t.toJSON(), { now: T0 + 1000, since: T0 - 86400_000 }).rules.some((r) => r.id === 'backup-to-db')).toBe(false);
  });

  it('says when the table overflowed', () => {
    const t = new EdgeTable(2);
    for (let i = 0; i < 5; i++) t.observe(rec({ dir: 'ingress', local: db, localPu: 'db-0', remote: ['app=api'], remotePu: 'a', port: 5000 + i }));
    const s = suggest(t.toJSON(), { now: T0 });
    expect(s.warnings[0]).toContain('3 new edges were not recorded');
    expect(s.text).toContain('# WARNING: 3 new edges');
  });

  it('keeps a label that only varies between groups, drops one that varies inside a group', () => {
    const t = new EdgeTable();
    for (let i = 0; i < 4; i++) {
      t.observe(rec({ dir: 'ingress', local: ['app=db', 'zone=a'], localPu: 'db', remote: ['app=worker', `shard=${i}`, 'team=x'], remotePu: `w${i}`, port: 5432 }));
    }
    const s = suggest(t.toJSON(), { now: T0 });
    const w = s.groups.find((g) => g.name === 'worker')!;
    expect(w.selector).toEqual(['app=worker', 'team=x']);
    expect(w.evidence).toContain('shard varied (4 values): dropped');
  });
});

describe('aggregateCidrs', () => {
  it('is exact under the bound, widens minimally above it, v4 and v6 separately', () => {
    expect(aggregateCidrs(['10.0.0.1', '10.0.0.2'], 8)).toEqual({ cidrs: ['10.0.0.1', '10.0.0.2'], widened: false });
    expect(aggregateCidrs(['10.0.0.1', '10.0.0.2', '10.9.0.1'], 2).cidrs).toEqual(['10.0.0.0/30', '10.9.0.1']);
    expect(aggregateCidrs(['10.0.0.1', '10.0.0.2', '10.9.0.1'], 1).cidrs).toEqual(['10.0.0.0/12']);
    expect(aggregateCidrs(['2001:db8::1', '2001:db8::2', '10.0.0.1'], 1).cidrs).toEqual(['10.0.0.1', '2001:db8::/126']);
    const many = Array.from({ length: 1000 }, (_, i) => `198.51.${i % 200}.${i % 250}`);
    const r = aggregateCidrs(many, 8);
    expect(r.cidrs.length).toBeLessThanOrEqual(8);
    const p = loadPolicy(`version: 1\nrules:\n  - fromNetworks: [${r.cidrs.join(', ')}]\n    action: allow\n`);
    for (const a of many) expect(p.ingress({ client: null, server: { labels: ['app=x'] }, port: 1, peerAddr: a }).allow).toBe(true);
  });
});

describe('diff', () => {
  it('names the observed flows a file refuses with the refusing rule and side, and the rules no flow used', () => {
    const t = shop();
    const p = loadPolicy(`version: 1
rules:
  - id: web-api
    from: {app: web}
    to: {app: api}
    ports: 8080
    action: allow
  - id: db-closed
    to: {app: db}
    action: reject
  - id: legacy
    from: {app: cron}
    to: {app: api}
    action: allow
`);
    const d = diff(p, t.toJSON());
    expect(d.unused).toEqual(['legacy']);
    const reasons = new Set(d.refused.map((v) => `${v.ruleId}@${v.direction}`));
    expect(reasons).toEqual(new Set(['db-closed@ingress', 'default:reject@ingress', 'default:reject@egress']));
    expect(d.allowed + d.refused.length).toBe(d.edges);
    // compare: against a running allow-all, applying the file refuses what diff refuses.
    const running = loadPolicy('version: 1\nrules:\n  - action: allow\n');
    const c = compare(running, p, t.toJSON());
    expect(c.newlyRefused.length).toBe(d.refused.length);
    expect(c.newlyAllowed).toEqual([]);
  });

  it('counts an audited refusal as a refusal (what enforce would do)', () => {
    const t = shop();
    const p = loadPolicy('version: 1\nmode: audit\nrules: []\n');
    expect(diff(p, t.toJSON()).allowed).toBe(0);
  });
});
