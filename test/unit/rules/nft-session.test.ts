// Transactions through one `nft -i`: a line each, then a marker whose error says the line is
// done; a refusal between two markers is that transaction's, even when stderr arrives in odd
// pieces; a session that dies fails its transaction (TESSERA_ERR_COMMAND) and the next starts anew.
import { describe, expect, it } from 'vitest';
import { createNftSession } from '../../../src/rules/nft-session.js';
import type { CommandRunner, StreamHandlers } from '../../../src/rules/runner.js';

function fake() {
  const children: Array<{ argv: string[]; on: StreamHandlers; written: string[]; stopped: boolean }> = [];
  const runner: CommandRunner = {
    run: async () => ({ stdout: '', stderr: '', code: 0 }),
    stream(argv, on) {
      const c = { argv, on, written: [] as string[], stopped: false };
      children.push(c);
      return { write: (t) => void c.written.push(t), stop: () => void (c.stopped = true) };
    },
  };
  return { runner, children };
}

const markerError = (n: number): string => `Error: No such file or directory\nlist table inet tessera_sync_${n}\n                ^^^^^^^^^^^^^^^\n`;
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('nft session', () => {
  it('runs each transaction as one line and tells a refusal from a success', async () => {
    const f = fake();
    const s = createNftSession({ runner: f.runner, setpriv: false })!;
    const one = s.run('add element inet tessera guard_ports { 80 }\nadd element inet tessera server_ports { 80 }\n');
    await tick();
    expect(f.children[0]!.argv).toEqual(['nft', '-i']);
    expect(f.children[0]!.written[0]).toBe('add element inet tessera guard_ports { 80 }; add element inet tessera server_ports { 80 }\nlist table inet tessera_sync_1\n');
    // In pieces: the caret line of the marker comes late.
    const err = markerError(1);
    f.children[0]!.on.stderr!(err.slice(0, 50));
    f.children[0]!.on.stderr!(err.slice(50, err.length - 5));
    f.children[0]!.on.stderr!(err.slice(err.length - 5));
    await expect(one).resolves.toBeUndefined();
    const two = s.run('add element inet tessera guard_ports { 99999 }');
    await tick();
    f.children[0]!.on.stderr!('Error: Service out of range\nadd element inet tessera guard_ports { 99999 }\n     ^^^^^\n' + markerError(2));
    await expect(two).rejects.toMatchObject({ code: 'TESSERA_ERR_RULES', message: expect.stringMatching(/Service out of range/) });
    const three = s.run('add element inet tessera guard_ports { 81 }');
    await tick();
    f.children[0]!.on.stderr!(markerError(3));
    await expect(three).resolves.toBeUndefined();
    expect(f.children).toHaveLength(1); // one process for all three
    s.stop();
    expect(f.children[0]!.stopped).toBe(true);
  });

  it('a session that dies fails its transaction as a command failure; the next one starts a new child', async () => {
    const f = fake();
    const s = createNftSession({ runner: f.runner, setpriv: false })!;
    const one = s.run('add element inet tessera guard_ports { 80 }');
    await tick();
    f.children[0]!.on.exit('nft -i exited (signal SIGKILL)');
    await expect(one).rejects.toMatchObject({ code: 'TESSERA_ERR_COMMAND' });
    const two = s.run('add element inet tessera guard_ports { 80 }');
    await tick();
    expect(f.children).toHaveLength(2);
    f.children[1]!.on.stderr!(markerError(2));
    await expect(two).resolves.toBeUndefined();
    s.stop();
  });

  it('takes line commands only', () => {
    const s = createNftSession({ runner: fake().runner, setpriv: false })!;
    expect(s.fits('add element inet tessera in_l2 { "a/b" : goto in_2 }\ndelete element inet tessera out_classid { 0x7e550001 }\n')).toBe(true);
    expect(s.fits('table inet tessera {\n  chain x {\n  }\n}\n')).toBe(false);
    expect(s.fits('# comment\nadd table inet x')).toBe(false);
  });

  it('none without a streaming runner', () => {
    expect(createNftSession({ runner: { run: async () => ({ stdout: '', stderr: '', code: 0 }) } })).toBeNull();
  });
});
