// Fakes for the daemon's services, typed against what they replace: a pino logger whose lines
// are kept, a NetCls in memory, a token issuer, a PU registry over them.
import pino, { type Logger } from 'pino';
import type { NetCls } from '../../../src/rules/index.js';
import { PuRegistry } from '../../../src/daemon/pus.js';
import { createSecret, createTokenIssuer } from '../../../src/identity/index.js';

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

/** A real pino logger writing into `lines`; `at(level)` filters by pino level name. */
export function capturingLogger(level = 'info'): { log: Logger; lines: LogLine[]; at(name: 'info' | 'warn' | 'error'): LogLine[] } {
  const lines: LogLine[] = [];
  const log = pino({ level }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  const levels = { info: 30, warn: 40, error: 50 };
  return { log, lines, at: (name) => lines.filter((l) => l.level === levels[name]) };
}

/** An in-memory net_cls tree: cgroups by name with their classid and pids. */
export function fakeNetCls(initial: Record<string, { pids: number[]; classid?: number }> = {}) {
  const groups = new Map(Object.entries(initial).map(([k, v]) => [k, { pids: [...v.pids], classid: v.classid ?? 0 }]));
  const created: Array<{ name: string; classid: number }> = [];
  const removed: string[] = [];
  const netcls = {
    async create(name: string, classid: number) {
      created.push({ name, classid });
      const g = groups.get(name);
      if (g) g.classid = classid;
      else groups.set(name, { pids: [], classid });
    },
    async cgroup2Ref() {
      return undefined;
    },
    async pids(name: string) {
      return groups.get(name)?.pids ?? [];
    },
    async list() {
      return [...groups.keys()].map((name) => ({ name, classid: groups.get(name)!.classid }));
    },
    async remove(name: string) {
      const g = groups.get(name);
      if (g && g.pids.length) throw new Error(`cgroup ${name} has processes`);
      removed.push(name);
      groups.delete(name);
    },
    async addPid(name: string, pid: number) {
      groups.get(name)?.pids.push(pid);
    },
  };
  return { netcls: netcls as unknown as NetCls, groups, created, removed };
}

export function registryOver(netcls: NetCls, onChange: () => void = () => {}): PuRegistry {
  return new PuRegistry({ netcls, issuer: createTokenIssuer({ mode: 'psk', hostId: 'host-t', psk: createSecret() }), tokenTtlSeconds: 600, onChange });
}
