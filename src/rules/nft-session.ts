// Rule transactions through one long-lived `nft -i` child instead of a process per
// transaction (issue 12 item 6): each transaction is one input line (nft -i runs a line as one
// batch: all of it commits or none), followed by a marker command that is known to fail —
// `list table inet tessera_sync_N` — whose error on stderr, echoing N, says that everything
// before it is done. Whatever stderr said between two markers is that transaction's refusal.
//
// Only line-shaped transactions go this way (the element deltas of a PU coming or going: the
// common case); a whole-table rewrite keeps `nft -f` (reconciler.ts). A session that dies, or
// does not answer in time, is ended by its PID and the transaction is reported as `failed`
// (not refused), so the caller can run it once more with `nft -f`; the next one starts a new
// session. The child runs under `setpriv --pdeathsig KILL` where setpriv exists.

import { TesseraError } from '../errors.js';
import { accessSync } from 'node:fs';
import type { CommandRunner, LineStream } from './runner.js';

export interface NftSession {
  /**
   * Run `text` (nft -f syntax, one command per line) as one transaction. Rejects with
   * TESSERA_ERR_RULES when nft refused it (nothing of it committed), with TESSERA_ERR_COMMAND
   * when the session failed (then nothing is known: the caller may retry another way).
   */
  run(text: string): Promise<void>;
  /** Whether `text` can go through the session (line commands only, not too long). */
  fits(text: string): boolean;
  stop(): void;
}

export interface NftSessionOptions {
  runner: CommandRunner;
  /** Wrap it in `setpriv --pdeathsig KILL` (default: when setpriv exists). */
  setpriv?: boolean;
  /** How long one transaction may take (ms, default 30 000). */
  timeoutMs?: number;
}

const MARK = 'tessera_sync_';
/** Longest line sent (nft reads a line at a time; beyond this, nft -f). */
const MAX_LINE = 256 * 1024;

interface Pending {
  n: number;
  resolve(): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

let setprivFound: boolean | undefined;
/** Whether setpriv exists (resolved once): the session runs under `setpriv --pdeathsig KILL`. */
function defaultSetpriv(): boolean {
  setprivFound ??= ['/usr/bin/setpriv', '/bin/setpriv'].some((p) => {
    try {
      accessSync(p);
      return true;
    } catch {
      return false;
    }
  });
  return setprivFound;
}

export function createNftSession(o: NftSessionOptions): NftSession | null {
  const stream = o.runner.stream?.bind(o.runner);
  if (!stream) return null;
  const timeoutMs = o.timeoutMs ?? 30_000;
  const argv = [...((o.setpriv ?? defaultSetpriv()) ? ['setpriv', '--pdeathsig', 'KILL'] : []), 'nft', '-i'];
  let child: LineStream | null = null;
  let err = '';
  let seq = 0;
  let pending: Pending | null = null;
  let chain: Promise<unknown> = Promise.resolve();

  const fail = (why: string): void => {
    const p = pending;
    pending = null;
    child?.stop();
    child = null;
    err = '';
    if (p) {
      clearTimeout(p.timer);
      p.reject(new TesseraError('TESSERA_ERR_COMMAND', `nft session: ${why}`));
    }
  };

  function onStderr(chunk: string): void {
    err += chunk;
    const p = pending;
    if (!p) return;
    const tag = `${MARK}${p.n}\n`;
    const at = err.indexOf(tag);
    if (at < 0) return;
    // The marker's own three lines: "Error: ...", the command, a caret line.
    const rest = err.slice(at + tag.length);
    const caret = rest.indexOf('\n');
    if (caret < 0) return; // its caret line is still on the way
    const before = err.slice(0, at);
    const refusal = before.slice(0, before.lastIndexOf('Error:')).trim();
    err = rest.slice(caret + 1);
    pending = null;
    clearTimeout(p.timer);
    if (refusal) p.reject(new TesseraError('TESSERA_ERR_RULES', `nft -i refused the transaction: ${refusal}`));
    else p.resolve();
  }

  function start(): LineStream {
    err = '';
    const c = stream!(argv, { line() {}, stderr: onStderr, exit: (why) => (child === c ? fail(why) : undefined) }, { stdin: true });
    return c;
  }

  const once = (text: string): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      child ??= start();
      const n = ++seq;
      const line = text.split('\n').map((l) => l.trim()).filter(Boolean).join('; ');
      pending = { n, resolve, reject, timer: setTimeout(() => fail(`no answer in ${timeoutMs} ms`), timeoutMs) };
      child.write(`${line}\nlist table inet ${MARK}${n}\n`);
    });

  return {
    // Each line a whole command (its braces closed on it), no comment: joined with '; '.
    fits: (text) => text.length < MAX_LINE && !text.includes('#') && text.split('\n').every((l) => l.split('{').length === l.split('}').length),
    run(text) {
      const p = chain.then(() => once(text));
      chain = p.catch(() => {});
      return p;
    },
    stop: () => fail('stopped'),
  };
}
