import { describe, expect, it } from 'vitest';
import { createCommandRunner } from '../../../src/rules/runner.js';
import { TesseraError } from '../../../src/errors.js';

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'resolved';
  } catch (err) {
    expect(err).toBeInstanceOf(TesseraError);
    return (err as TesseraError).code + ': ' + (err as TesseraError).message;
  }
}

describe('createCommandRunner', () => {
  const r = createCommandRunner();

  it('feeds stdin and returns stdout', async () => {
    const res = await r.run(['cat'], { input: 'hello\n' });
    expect(res).toEqual({ stdout: 'hello\n', stderr: '', code: 0 });
  });

  it('applies the prefix', async () => {
    const res = await createCommandRunner({ prefix: ['echo', 'pre'] }).run(['x']);
    expect(res.stdout).toBe('pre x\n');
  });

  it('turns a failure into TESSERA_ERR_COMMAND with stderr in the message', async () => {
    expect(await code(r.run(['sh', '-c', 'echo boom >&2; exit 3']))).toBe('TESSERA_ERR_COMMAND: sh -c echo boom >&2; exit 3 failed (exit status 3): boom');
  });

  it('a failing iptables-restore is TESSERA_ERR_RULES', async () => {
    // A stand-in binary named like iptables-restore.
    const res = await code(createCommandRunner({ prefix: ['sh', '-c', 'echo "line 2 failed" >&2; exit 2'] }).run(['iptables-restore']));
    expect(res).toMatch(/^TESSERA_ERR_RULES: iptables-restore failed \(exit status 2\): line 2 failed/);
  });

  it('a missing binary is TESSERA_ERR_PREREQ naming the package', async () => {
    expect(await code(r.run(['ip6tables-nonexistent-xyz']))).toBe('TESSERA_ERR_PREREQ: ip6tables-nonexistent-xyz not found: install it with apt-get install iptables');
    expect(await code(r.run(['sh', '-c', 'exit 127']))).toMatch(/^TESSERA_ERR_PREREQ/);
  });

  it('times out', async () => {
    // The message says the runner ended it; the test's own 3 s timeout is the safety bound
    // (sleep 5 running to its end would exceed it).
    expect(await code(r.run(['sleep', '5'], { timeoutMs: 200 }))).toMatch(/^TESSERA_ERR_COMMAND: sleep 5: timed out after 200 ms/);
  }, 3000);

  it('validates options', () => {
    expect(() => createCommandRunner({ timeoutMs: 0 })).toThrow(/timeoutMs/);
  });
});
