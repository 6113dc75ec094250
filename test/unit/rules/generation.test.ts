// The rules change signal: the nf_tables generation id, only with iptables-nft (else iptables
// changes would not move it) and only when it can be read; the real runner's stream() too.
import { describe, expect, it } from 'vitest';
import { rulesGeneration } from '../../../src/rules/generation.js';
import { createCommandRunner, type CommandRunner } from '../../../src/rules/runner.js';

const runner = (version: string): CommandRunner => ({ run: async () => ({ stdout: version, stderr: '', code: 0 }) });

describe('rules generation', () => {
  it('reads the id with iptables-nft', async () => {
    let id = 7;
    const g = await rulesGeneration(runner('iptables v1.8.9 (nf_tables)\n'), undefined, () => id);
    expect(g?.()).toBe(7);
    id = 8;
    expect(g?.()).toBe(8);
  });

  it('is unknown with iptables-legacy, without the addon function, or when the kernel refuses', async () => {
    const warns: string[] = [];
    const log = { warn: (_o: object, m?: string) => void warns.push(m ?? '') };
    expect(await rulesGeneration(runner('iptables v1.8.9 (legacy)\n'), log, () => 1)).toBeUndefined();
    expect(await rulesGeneration(runner('iptables v1.8.9 (nf_tables)\n'), log, null)).toBeUndefined();
    const refused = () => {
      throw new Error('EPERM');
    };
    expect(await rulesGeneration(runner('iptables v1.8.9 (nf_tables)\n'), log, refused)).toBeUndefined();
    expect(warns).toHaveLength(2);
    // A read that fails later: unknown for that pass (the reconciler reads on its clock).
    let fail = false;
    const g = await rulesGeneration(runner('iptables v1.8.9 (nf_tables)\n'), log, () => {
      if (fail) throw new Error('gone');
      return 3;
    });
    fail = true;
    expect(g?.()).toBeUndefined();
  });

  it('the real runner streams lines and tells the exit once', async () => {
    const lines: string[] = [];
    const why = await new Promise<string>((resolve) => createCommandRunner().stream!(['sh', '-c', 'echo one; echo two; exit 3'], { line: (t) => void lines.push(t), exit: resolve }));
    expect(lines).toEqual(['one', 'two']);
    expect(why).toMatch(/status 3/);
  });
});
