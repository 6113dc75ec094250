// Listening-port discovery: the addon's flat [inode, port, ...] dump when given, else only the
// LISTEN block at the head of /proc/net/tcp{,6}.

import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createListenerSource, listeningSockets } from '../../../src/monitors/process/listeners.js';

const HEAD = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n';
const line = (sl: number, port: number, st: string, inode: number) =>
  `  ${sl}: 0100007F:${port.toString(16).toUpperCase().padStart(4, '0')} 00000000:0000 ${st} 00000000:00000000 00:00000000 00000000     0        0 ${inode} 1 0000000000000000 100 0 0 10 0\n`;

describe('listeningSockets', () => {
  it('maps inodes of LISTEN sockets to ports and stops at the first other state', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tessera-procnet-'));
    try {
      let tcp = HEAD + line(0, 80, '0A', 1001) + line(1, 8080, '0A', 1002);
      // Thousands of TIME_WAIT lines follow on a busy host; a LISTEN line after them is not
      // possible in the kernel's order, so it must not be read (proves the early stop).
      for (let i = 0; i < 5000; i++) tcp += line(i + 2, 40000 + (i % 1000), '06', 0);
      tcp += line(9999, 9999, '0A', 1003);
      writeFileSync(join(dir, 'tcp'), tcp);
      writeFileSync(join(dir, 'tcp6'), HEAD + line(0, 443, '0A', 2001));
      const m = listeningSockets(null, dir);
      expect([...m.entries()].sort()).toEqual([
        ['1001', 80],
        ['1002', 8080],
        ['2001', 443],
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('copes with a missing tcp6 file (no IPv6)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tessera-procnet-'));
    try {
      writeFileSync(join(dir, 'tcp'), HEAD + line(0, 22, '0A', 7));
      expect(listeningSockets(null, dir).get('7')).toBe(22);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('maps the addon dump [inode, port, ...] and reads no /proc file then', () => {
    const dump = () => Uint32Array.from([1001, 80, 4294967295, 65535, 2001, 443]);
    const m = listeningSockets(dump, '/nonexistent');
    expect([...m.entries()]).toEqual([
      ['1001', 80],
      ['4294967295', 65535],
      ['2001', 443],
    ]);
    expect(listeningSockets(() => new Uint32Array(0)).size).toBe(0);
  });

  it('lets a dump error through (no silent fallback once the addon is loaded)', () => {
    const err = Object.assign(new Error('sock_diag refused'), { code: 'TESSERA_ERR_SOCK_DIAG' });
    expect(() =>
      listeningSockets(() => {
        throw err;
      }),
    ).toThrow(err);
  });
});

describe('createListenerSource (the daemon port scan)', () => {
  it('uses the dump while it works, and /proc for good after its first error, reported once', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tessera-procnet-'));
    try {
      writeFileSync(join(dir, 'tcp'), HEAD + line(0, 22, '0A', 7));
      let calls = 0;
      let fail = false;
      const errors: unknown[] = [];
      const scan = createListenerSource(
        () => {
          calls++;
          if (fail) throw new Error('sock_diag refused');
          return Uint32Array.from([1001, 80]);
        },
        (err) => errors.push(err),
        dir,
      );
      expect([...scan().entries()]).toEqual([['1001', 80]]);
      fail = true;
      expect([...scan().entries()]).toEqual([['7', 22]]); // the failing scan still answers, from /proc
      expect([...scan().entries()]).toEqual([['7', 22]]);
      expect(calls).toBe(2); // the dump is not retried after its error
      expect(errors).toHaveLength(1);
      // No addon at all: /proc from the start, nothing reported.
      expect([...createListenerSource(null, (e) => errors.push(e), dir)().entries()]).toEqual([['7', 22]]);
      expect(errors).toHaveLength(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
