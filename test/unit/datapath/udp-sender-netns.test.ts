// The UDP sender of a container namespace (udp/sender.ts with `netns`): raw sockets from the
// addon, made inside the namespace. Bad input fails closed: one log line, every send refused,
// nothing thrown. As root, a socket made in this process's own namespace file sends a packet
// to loopback and closes.

import { describe, expect, it } from 'vitest';
import { createUdpSender } from '../../../src/datapath/udp/sender.js';
import { loadNative } from '../../../src/datapath/native.js';

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

/** A minimal IPv4/UDP packet to 127.0.0.1 (checksum 0: none), payload starting with the exchange's magic. */
function packet(): Uint8Array {
  const p = new Uint8Array(32);
  p.set([0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
  p.set([0x9c, 0x40, 0x9c, 0x41, 0, 12, 0, 0], 20); // 40000 -> 40001
  p.set([0x7e, 0x55, 0x75, 0x01], 28);
  return p;
}

describe('UDP sender in a container namespace', () => {
  it('a namespace that cannot be opened: one log line, every send refused, nothing thrown', () => {
    const logs: string[] = [];
    const s = createUdpSender((m) => logs.push(m), { netns: '/nonexistent/ns/net' });
    expect(s.send(packet())).toBe(false);
    expect(s.send(packet())).toBe(false);
    expect(s.errors).toBe(2);
    expect(s.sent).toBe(0);
    expect(logs).toHaveLength(1);
    expect(logs[0]).toMatch(/cannot send control packets \(in \/nonexistent\/ns\/net: .*No such file.*\); UDP flows of this container stay refused/);
    s.close();
  });

  it('the addon rejects bad arguments with TESSERA_ERR_INVALID_ARGUMENT and reports send errors as -errno', () => {
    const n = loadNative();
    expect(() => n.rawSocket!(5 as 4)).toThrow(expect.objectContaining({ code: 'TESSERA_ERR_INVALID_ARGUMENT' }));
    expect(() => n.rawSocket!(4, '' as string)).toThrow(expect.objectContaining({ code: 'TESSERA_ERR_INVALID_ARGUMENT' }));
    expect(() => n.rawSend!(-1, packet())).toThrow(expect.objectContaining({ code: 'TESSERA_ERR_INVALID_ARGUMENT' }));
    expect(() => n.rawSocket!(4, '/nonexistent/ns/net')).toThrow(expect.objectContaining({ code: 'TESSERA_ERR_RAW_SOCKET', errno: 2 }));
  });

  it.runIf(isRoot)('as root: made in a namespace file (this thread\'s own), it sends to loopback and closes', () => {
    const logs: string[] = [];
    const s = createUdpSender((m) => logs.push(m), { netns: '/proc/thread-self/ns/net' });
    expect(s.send(packet())).toBe(true);
    expect(s.sent).toBe(1);
    expect(logs).toEqual([]);
    s.close();
    expect(s.send(packet())).toBe(false); // closed: refused, not thrown
  });
});
