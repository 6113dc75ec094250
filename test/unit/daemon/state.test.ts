// STATE_DIR/pus.json carries each PU's last known listening ports across a restart, so a
// re-adopted PU's ports are queued from the first rule transaction. A missing file is a first
// start; a corrupt one, or a bad entry, must not stop the daemon nor take good entries with it.
import { describe, expect, it, beforeEach, afterEach } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPuState, savePuState, type SavedPu } from '../../../src/daemon/state.js';

describe('PU state file', () => {
  let dir: string;
  let path: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tessera-state-'));
    path = join(dir, 'pus.json');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const web: SavedPu = { id: 'proc-0a1b2c3d', kind: 'process', name: 'httpd', labels: ['app=web'], index: 3, ports: [80, 8080] };
  const ctr: SavedPu = { id: 'ctr-0123456789ab', kind: 'container', name: 'nginx', labels: [], index: 7, ports: [443] };

  it('round-trips process and container PUs with their ports, written 0600 with no temp file left', () => {
    savePuState(path, [web, ctr]);
    expect(loadPuState(path)).toEqual({ pus: [web, ctr], problems: [] });
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(existsSync(path + '.tmp')).toBe(false);
  });

  it('a missing file is a first start: no PUs, no problem', () => {
    expect(loadPuState(path)).toEqual({ pus: [], problems: [] });
  });

  it('a corrupt file (truncated JSON, not a list) reads as empty and says why', () => {
    writeFileSync(path, JSON.stringify([web]).slice(0, 20));
    const truncated = loadPuState(path);
    expect(truncated.pus).toEqual([]);
    expect(truncated.problems.join()).toMatch(/not readable JSON/);
    writeFileSync(path, JSON.stringify({ pus: [web] }));
    const notList = loadPuState(path);
    expect(notList.pus).toEqual([]);
    expect(notList.problems.join()).toMatch(/does not hold a list/);
  });

  it('skips a bad or repeated entry on its own and keeps the others', () => {
    const bad = [
      { ...web, id: '../../etc' },
      { ...web, id: 'proc-x', index: 0 },
      { ...web, id: 'proc-y', ports: [80, 70000] },
      { ...web, id: 'proc-z', kind: 'vm' },
      { ...web, id: 'proc-w', labels: [1] },
      null,
      web,
    ];
    writeFileSync(path, JSON.stringify([web, ...bad, ctr]));
    const r = loadPuState(path);
    expect(r.pus).toEqual([web, ctr]);
    expect(r.problems).toHaveLength(bad.length);
  });

  it('reads a file of the earlier format (process PUs, no kind, no ports) as process PUs without ports', () => {
    writeFileSync(path, JSON.stringify([{ id: web.id, name: web.name, labels: web.labels, index: web.index }]));
    expect(loadPuState(path).pus).toEqual([{ ...web, ports: [] }]);
  });

  it('a failed write throws and leaves the previous file as it was', () => {
    savePuState(path, [web]);
    const before = readFileSync(path, 'utf8');
    expect(() => savePuState(join(dir, 'missing-dir', 'pus.json'), [ctr])).toThrow();
    expect(readFileSync(path, 'utf8')).toBe(before);
  });
});
