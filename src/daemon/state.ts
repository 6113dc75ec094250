// STATE_DIR/pus.json: what a restarted daemon needs to protect running PUs again before its
// first rule transaction. Process PUs: id, name, labels, index and their last known listening
// ports (re-adopted with them, so their ports are queued from the first apply, not from the
// first scan). Container PUs: id, index and ports (the Docker resync recreates them; their
// index, hence classid, and ports are taken from here so nothing changes under them).
//
// Written atomically (temp file + rename, mode 600). A missing file is a first start; an
// unreadable or malformed one is reported and read as empty (the PUs' processes keep running
// in their cgroups; they are listed as orphans and `tessera cleanup` removes them); a bad
// entry is skipped on its own.

import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { errorMessage } from '../errors.js';

export interface SavedPu {
  id: string;
  kind: 'process' | 'container';
  /** Process PUs: shown by status; containers: the container name. */
  name: string;
  /** User labels (no @ system labels: those are recomputed). Empty for containers. */
  labels: string[];
  index: number;
  /** Listening ports as last scanned (ascending). */
  ports: number[];
}

const ID = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const isPort = (p: unknown): p is number => Number.isInteger(p) && (p as number) >= 1 && (p as number) <= 65_535;

function entry(x: unknown): SavedPu | null {
  if (typeof x !== 'object' || x === null) return null;
  const o = x as Record<string, unknown>;
  if (typeof o.id !== 'string' || !ID.test(o.id)) return null;
  if (!Number.isInteger(o.index) || (o.index as number) < 1 || (o.index as number) > 0xffff) return null;
  const kind = o.kind === undefined ? 'process' : o.kind; // files of earlier versions held process PUs only
  if (kind !== 'process' && kind !== 'container') return null;
  const labels = o.labels === undefined ? [] : o.labels;
  if (!Array.isArray(labels) || !labels.every((l) => typeof l === 'string')) return null;
  const ports = o.ports === undefined ? [] : o.ports; // earlier versions saved no ports
  if (!Array.isArray(ports) || !ports.every(isPort)) return null;
  return { id: o.id, kind, name: typeof o.name === 'string' ? o.name : o.id, labels: labels as string[], index: o.index as number, ports: [...new Set(ports as number[])].sort((a, b) => a - b) };
}

export interface LoadedState {
  pus: SavedPu[];
  /** Why the file, or some of its entries, could not be used (for a warn line). */
  problems: string[];
}

export function loadPuState(path: string): LoadedState {
  if (!existsSync(path)) return { pus: [], problems: [] };
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    return { pus: [], problems: [`${path} is not readable JSON: ${errorMessage(err)}`] };
  }
  if (!Array.isArray(raw)) return { pus: [], problems: [`${path} does not hold a list of PUs`] };
  const pus: SavedPu[] = [];
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const [i, x] of raw.entries()) {
    const e = entry(x);
    if (!e || seen.has(e.id)) problems.push(`${path}: entry ${i} is malformed or repeated; skipped`);
    else {
      seen.add(e.id);
      pus.push(e);
    }
  }
  return { pus, problems };
}

/** Throws on a write failure (the caller logs it; the previous file stays intact). */
export function savePuState(path: string, pus: SavedPu[]): void {
  writeFileSync(path + '.tmp', JSON.stringify(pus), { mode: 0o600 });
  renameSync(path + '.tmp', path);
}
