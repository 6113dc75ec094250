// The stop sequence keeps enforcement unless removal is asked for: state written while every
// PU is known, rules held before PUs are dropped, containers before the workers, locks last.
import { describe, expect, it } from 'vitest';
import { createShutdown, type ShutdownSteps } from '../../../src/daemon/shutdown.js';
import { capturingLogger } from './fakes.js';

function steps(removeRulesOnStop: boolean, fail: Partial<Record<'containers' | 'removeRules', boolean>> = {}) {
  const order: string[] = [];
  const l = capturingLogger();
  const s: ShutdownSteps = {
    log: l.log,
    removeRulesOnStop,
    quiesce: async () => void order.push('quiesce'),
    saveState: () => void order.push('save'),
    holdRules: () => void order.push('hold'),
    stopContainers: async (o) => {
      order.push(`containers(remove=${o.removeRules})`);
      if (fail.containers) throw new Error('engine gone');
    },
    syncIdle: async () => void order.push('idle'),
    stopDatapath: async () => void order.push('datapath'),
    removeRules: async () => {
      order.push('removeRules');
      if (fail.removeRules) throw new Error('iptables busy');
      return { removed: 4 };
    },
    releaseLocks: async () => void order.push('locks'),
  };
  return { s, order, l };
}

describe('shutdown', () => {
  it('a plain stop keeps the rules: saved, held, nothing removed, locks last; once only', async () => {
    const t = steps(false);
    const d = createShutdown(t.s);
    const first = d.stop('SIGTERM');
    expect(d.stop('SIGINT')).toBe(first);
    await d.stopped;
    expect(t.order).toEqual(['quiesce', 'save', 'hold', 'containers(remove=false)', 'idle', 'datapath', 'locks']);
    expect(t.l.at('info').at(-1)!.msg).toMatch(/^stopped; rules left in place/);
  });

  it('--remove-rules-on-stop removes the rules after the workers stop, and never holds them', async () => {
    const t = steps(true);
    await createShutdown(t.s).stop('SIGTERM');
    expect(t.order).toEqual(['quiesce', 'save', 'containers(remove=true)', 'idle', 'datapath', 'removeRules', 'locks']);
  });

  it('failures on the way are logged and the stop still completes and releases the locks', async () => {
    const t = steps(false, { containers: true, removeRules: true });
    await createShutdown(t.s).stop('test', { removeRules: true });
    expect(t.order.at(-1)).toBe('locks');
    expect(t.l.at('error').map((l) => l.msg)).toEqual(['stopping container PUs failed', 'removing rules failed: run tessera cleanup']);
  });
});
