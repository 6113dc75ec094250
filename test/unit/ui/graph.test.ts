import { describe, expect, it } from 'vitest';
import { addressGroup, buildGraph, classOf, components, parseQuery, parseTime } from '../../../src/ui/graph.js';
import { flow, generateFlows } from '../../../bench/lib/ui-fixture.js';

const T = Date.parse('2026-01-01T12:00:00Z');

describe('classOf', () => {
  it('names each decision by what the map draws', () => {
    expect(classOf({ verdict: 'accept', reason: 'ok' })).toBe('allowed');
    expect(classOf({ verdict: 'reject', reason: 'policy' })).toBe('refused');
    expect(classOf({ verdict: 'drop', reason: 'no-state' })).toBe('refused');
    expect(classOf({ verdict: 'accept', reason: 'audit' })).toBe('audit');
    expect(classOf({ verdict: 'accept', reason: 'learning' })).toBe('learning');
  });
});

describe('addressGroup', () => {
  it('groups IPv4 peers by prefix and IPv6 peers by /64', () => {
    expect(addressGroup('192.0.2.77')).toBe('192.0.2.0/24');
    expect(addressGroup('192.0.2.77', 32)).toBe('192.0.2.77/32');
    expect(addressGroup('192.0.2.77', 16)).toBe('192.0.0.0/16');
    expect(addressGroup('::ffff:10.1.2.3')).toBe('10.1.2.0/24');
    expect(addressGroup('2001:db8:1:2:3::9')).toBe('2001:db8:1:2::/64');
    expect(addressGroup('2001:db8::1')).toBe('2001:db8:0:0::/64');
  });
});

describe('buildGraph', () => {
  const flows = [
    flow({ client: 'web', server: 'api', port: 8080, clientPort: 1000, time: T }),
    // The same connection as the server's host saw it: counted once.
    { ...flow({ client: 'api', server: 'web', port: 1000, clientPort: 8080, time: T + 1 }), direction: 'ingress' as const, stage: 'ack' as const },
    flow({ client: 'web', server: 'api', port: 8080, clientPort: 1001, time: T + 2 }),
    flow({ client: 'web', server: 'db', port: 5432, verdict: 'reject', clientPort: 1002, time: T + 3 }),
    // A retransmitted refused SYN: the same connection.
    flow({ client: 'web', server: 'db', port: 5432, verdict: 'reject', clientPort: 1002, time: T + 4 }),
    flow({ client: { addr: '198.51.100.9' }, server: 'web', port: 443, clientPort: 5555, time: T + 5 }),
  ];

  it('makes nodes of label groups and address groups, and edges client -> server with counts', () => {
    const g = buildGraph(flows);
    expect(g.nodes.map((n) => [n.id, n.kind, n.label])).toEqual([
      ['addr:198.51.100.0/24', 'address', '198.51.100.0/24'],
      ['pu:app=api', 'pu', 'app=api'],
      ['pu:app=db', 'pu', 'app=db'],
      ['pu:app=web', 'pu', 'app=web'],
    ]);
    const e = Object.fromEntries(g.edges.map((x) => [x.id, x]));
    expect(e['pu:app=web->pu:app=api']).toMatchObject({ connections: 2, records: 3, verdict: 'allowed', ports: [8080] });
    expect(e['pu:app=web->pu:app=db']).toMatchObject({ connections: 1, records: 2, verdict: 'refused', reasons: ['policy'] });
    expect(e['addr:198.51.100.0/24->pu:app=web']).toMatchObject({ connections: 1, verdict: 'allowed', ports: [443] });
    expect(g.records).toBe(6);
    expect(g.islands).toEqual([]);
  });

  it('draws an edge as its latest verdict and counts every class', () => {
    const later = flow({ client: 'web', server: 'api', port: 8080, verdict: 'reject', reason: 'bad-signature', clientPort: 1003, time: T + 10 });
    const g = buildGraph([...flows, later]);
    const e = g.edges.find((x) => x.id === 'pu:app=web->pu:app=api')!;
    expect(e.verdict).toBe('refused');
    expect(e.byClass).toEqual({ allowed: 3, refused: 1, audit: 0, learning: 0 });
    // Order of arrival does not matter, the record's time does.
    const g2 = buildGraph([later, ...flows]);
    expect(g2.edges.find((x) => x.id === 'pu:app=web->pu:app=api')!.verdict).toBe('refused');
  });

  it('groups by another label key; PUs without it form one group', () => {
    const f = { ...flow({ client: 'web', server: 'api', port: 80, time: T }), localLabels: ['team=blue'], remoteLabels: ['app=api'] };
    const g = buildGraph([f], {}, { groupBy: 'team' });
    expect(g.nodes.map((n) => [n.id, n.label])).toEqual([
      ['pu:!team', '(no team label)'],
      ['pu:team=blue', 'team=blue'],
    ]);
  });

  it('shows local PUs without flows, and a local port without a PU as the host', () => {
    const unprotected = { ...flow({ client: { addr: '10.0.0.1' }, server: 'x', port: 22, time: T }), localPu: null, localLabels: null, reason: 'no-pu' };
    const g = buildGraph([unprotected], {}, {}, { host: 'h1', pus: [{ id: 'p1', labels: ['app=idle'] }] });
    expect(g.nodes.map((n) => n.id)).toEqual(['addr:10.0.0.0/24', 'host:local', 'pu:app=idle']);
    expect(g.nodes.find((n) => n.id === 'pu:app=idle')!.hosts).toEqual(['h1']);
    expect(g.edges.map((e) => e.id)).toEqual(['addr:10.0.0.0/24->host:local']);
  });

  it('filters by time, verdict, reason, label and server port', () => {
    const ids = (q: string): string[] => {
      const p = parseQuery(new URLSearchParams(q), T + 100);
      if (p instanceof Error) throw p;
      return buildGraph(flows, p.filter, p.opts).edges.map((e) => e.id);
    };
    expect(ids('verdict=refused')).toEqual(['pu:app=web->pu:app=db']);
    expect(ids('verdict=allowed,refused')).toHaveLength(3);
    expect(ids('reason=policy')).toEqual(['pu:app=web->pu:app=db']);
    expect(ids('port=443')).toEqual(['addr:198.51.100.0/24->pu:app=web']);
    expect(ids('label=app=db')).toEqual(['pu:app=web->pu:app=db']);
    expect(ids(`since=${new Date(T + 5).toISOString()}`)).toEqual(['addr:198.51.100.0/24->pu:app=web']);
    expect(ids(`until=${T + 2}`)).toEqual(['pu:app=web->pu:app=api']);
    expect(ids('net=32')).toContain('addr:198.51.100.9/32->pu:app=web');
  });

  it('marks islands (connected components) above the node threshold, largest first', () => {
    const g = buildGraph(generateFlows(60, 120, 20, T), {}, { islandThreshold: 40 });
    expect(g.nodes).toHaveLength(60);
    expect(g.islands.map((i) => i.length)).toEqual([20, 20, 20]);
    for (const n of g.nodes) expect(g.islands[n.island]).toContain(n.id);
    for (const e of g.edges) expect(g.nodes.find((n) => n.id === e.source)!.island).toBe(g.nodes.find((n) => n.id === e.target)!.island);
    expect(buildGraph(generateFlows(60, 120, 20, T), {}, { islandThreshold: 60 }).islands).toEqual([]);
  });
});

describe('components', () => {
  it('joins nodes through edges in either direction', () => {
    expect(components(['a', 'b', 'c', 'd', 'e'], [{ source: 'b', target: 'a' }, { source: 'c', target: 'b' }, { source: 'e', target: 'd' }, { source: 'x', target: 'a' }])).toEqual([['a', 'b', 'c'], ['d', 'e']]);
  });
});

describe('parseQuery / parseTime', () => {
  it('reads durations, epoch ms and ISO times', () => {
    expect(parseTime('15m', T)).toBe(T - 15 * 60_000);
    expect(parseTime('2h', T)).toBe(T - 2 * 3600_000);
    expect(parseTime(String(T), 0)).toBe(T);
    expect(parseTime('2026-01-01T12:00:00Z', 0)).toBe(T);
    expect(parseTime('', T)).toBeUndefined();
  });

  it('names the bad parameter', () => {
    const err = (q: string): string => (parseQuery(new URLSearchParams(q), T) as Error).message;
    expect(err('since=yesterday')).toMatch(/^since: not a time or duration/);
    expect(err('verdict=green')).toMatch(/^verdict: "green" is not one of allowed, refused, audit, learning/);
    expect(err('port=99999')).toMatch(/^port:/);
    expect(err('by=a%20b')).toMatch(/^by:/);
    expect(err('net=40')).toMatch(/^net:/);
  });
});
