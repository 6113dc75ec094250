// Flow records cross postMessage as tuples; the round trip must give back the same record.
import { describe, expect, it } from 'vitest';
import { flowFromTuple, flowToTuple } from '../../../src/datapath/messages.js';
import type { FlowRecord } from '../../../src/flow.js';

const base: FlowRecord = {
  time: 1_764_000_000_123,
  direction: 'ingress',
  stage: 'ack',
  verdict: 'accept',
  reason: 'ok',
  ruleId: 'default',
  localPu: 'pu-1',
  localLabels: ['app=nginx'],
  localPort: 80,
  remoteAddr: '10.213.0.2',
  remotePort: 40_000,
  remoteHost: 'host-a',
  remotePu: 'pu-2',
  remoteLabels: ['app=nginx', 'env=prod'],
};

describe('flow tuples', () => {
  it('round-trip a record, through structured clone too', () => {
    expect(flowFromTuple(flowToTuple(base))).toEqual(base);
    expect(flowFromTuple(structuredClone(flowToTuple(base)))).toEqual(base);
  });

  it('keep observed rule ids when present and add none when absent', () => {
    const seen: FlowRecord = { ...base, verdict: 'reject', reason: 'policy', observed: ['watch-1', 'watch-2'] };
    expect(flowFromTuple(flowToTuple(seen))).toEqual(seen);
    expect('observed' in flowFromTuple(flowToTuple(base))).toBe(false);
  });

  it('carry nulls of an unidentified peer', () => {
    const anon: FlowRecord = { ...base, stage: 'syn', verdict: 'reject', reason: 'missing-token', remoteHost: null, remotePu: null, remoteLabels: null, localPu: null, localLabels: null };
    expect(flowFromTuple(flowToTuple(anon))).toEqual(anon);
  });
});
