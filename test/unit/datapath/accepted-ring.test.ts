// The worker's memory of accept records it did not send (for revoke): what it gives back must
// be exactly what flowToTuple would have sent, newest `capacity` records, oldest first.
import { describe, expect, it } from 'vitest';
import { AcceptedRing } from '../../../src/datapath/accepted-ring.js';
import { flowFromTuple, flowToTuple } from '../../../src/datapath/messages.js';
import type { FlowRecord } from '../../../src/flow.js';

const base: FlowRecord = {
  time: 1_764_000_000_123.5,
  direction: 'ingress',
  stage: 'syn',
  verdict: 'accept',
  reason: 'ok',
  ruleId: 'default',
  localPu: 'pu-1',
  localLabels: ['app=nginx'],
  localPort: 8090,
  remoteAddr: '10.213.115.2',
  remotePort: 65_535,
  remoteHost: 'host-a',
  remotePu: 'pu-2',
  remoteLabels: ['app=nginx', 'env=prod'],
};

describe('AcceptedRing', () => {
  it('gives back each record as flowToTuple makes it, through structured clone too', () => {
    const records: FlowRecord[] = [
      base,
      { ...base, direction: 'egress', stage: 'syn-ack', localPort: 0, remotePort: 1 },
      { ...base, mode: 'learn', reason: 'learn', observed: ['watch-1'] },
      { ...base, mode: 'audit', protocol: 'udp', stage: 'confirm' },
      { ...base, remoteHost: null, remotePu: null, remoteLabels: null, remoteAddr: 'fd00::1' },
    ];
    const ring = new AcceptedRing(8);
    for (const r of records) ring.push(r);
    expect(ring.size).toBe(records.length);
    expect(ring.tuples()).toEqual(records.map(flowToTuple));
    expect(structuredClone(ring.tuples()).map(flowFromTuple)).toEqual(records.map((r) => flowFromTuple(flowToTuple(r))));
  });

  it('keeps the newest capacity records, oldest first, when it wraps', () => {
    const ring = new AcceptedRing(3);
    for (let p = 1; p <= 7; p++) ring.push({ ...base, remotePort: p });
    expect(ring.size).toBe(3);
    expect(ring.tuples().map((t) => t[10])).toEqual([5, 6, 7]);
  });

  it('keeps every distinct address past its intern table bound', () => {
    const ring = new AcceptedRing(6000);
    for (let i = 0; i < 5000; i++) ring.push({ ...base, remoteAddr: `10.213.${i >> 8}.${i & 255}` });
    const addrs = ring.tuples().map((t) => t[9]);
    expect(new Set(addrs).size).toBe(5000);
    expect(addrs[4999]).toBe('10.213.19.135');
  });

  it('refuses a capacity that is not a positive integer', () => {
    expect(() => new AcceptedRing(0)).toThrow(RangeError);
    expect(() => new AcceptedRing(1.5)).toThrow(RangeError);
  });
});
