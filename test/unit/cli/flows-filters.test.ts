// `tessera flows` filters that no record could ever match are usage errors (exit 2, one line
// naming what is valid), not an empty answer: an unknown --reason lists the reason codes, a
// malformed --from-label/--to-label says what a label is. Valid filters still reach the
// daemon and filter its records. The CLI's list of reason codes is the datapath's table.

import { afterEach, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from '../../../src/cli/main.js';
import { PRIVILEGED } from '../../../src/bin/daemon.js';
import { REASON_CODES } from '../../../src/cli/flows-reasons.js';
import type { Reason } from '../../../src/datapath/index.js';
import { capture, flow, startFakeDaemon, type FakeDaemon } from './fake-daemon.js';

// Type check (npx tsc -p tsconfig.test.json): every datapath reason is in the CLI's list, and
// the list holds nothing else. A new code in src/datapath/handshake/types.ts fails here.
type Unlisted = Exclude<Reason, (typeof REASON_CODES)[number]>;
type Unknown = Exclude<(typeof REASON_CODES)[number], Reason>;
const everyReasonListed: [Unlisted | Unknown] extends [never] ? true : Unlisted | Unknown = true;

async function run(argv: string[]) {
  const c = capture();
  const code = await runCli(argv, c.io, PRIVILEGED);
  return { code, out: c.out, err: c.err };
}

describe('tessera flows filters', () => {
  let d: FakeDaemon | undefined;
  afterEach(async () => {
    await d?.close();
    d = undefined;
  });

  it('lists the same reason codes as the datapath table and docs/errors.md', () => {
    expect(everyReasonListed).toBe(true);
    const root = join(import.meta.dirname, '..', '..', '..');
    const src = readFileSync(join(root, 'src', 'datapath', 'handshake', 'types.ts'), 'utf8');
    const union = [...(/export type Reason =([^;]+);/.exec(src)![1]!).matchAll(/'([a-z-]+)'/g)].map((m) => m[1]!);
    expect([...REASON_CODES].sort()).toEqual(union.sort());
    const doc = readFileSync(join(root, 'docs', 'errors.md'), 'utf8');
    expect(REASON_CODES.filter((r) => !doc.includes('| `' + r + '` |'))).toEqual([]);
  });

  it('refuses an unknown --reason with status 2 and one line listing the valid codes', async () => {
    const r = await run(['flows', '--reason', 'polcy', '--socket', '/nonexistent/tessera.sock']);
    expect(r.code).toBe(2);
    expect(r.err[0]).toBe(`tessera flows: --reason must be one of ${REASON_CODES.join(', ')}, got "polcy" (did you mean policy?) [TESSERA_ERR_INVALID_ARGUMENT]`);
    expect(r.err.slice(1)).toEqual(["See 'tessera flows --help'."]);
    expect(r.out).toEqual([]);
    // Also when one of several is wrong, and with --follow.
    expect((await run(['flows', '--reason', 'policy', '--reason', 'nope', '-f', '--socket', '/nonexistent/tessera.sock'])).code).toBe(2);
  });

  it('refuses a label filter no record can match: empty, a bad key, a control character', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--from-label', ','], /--from-label needs labels \(key=value or key, comma-separated\), got ","/],
      [['--to-label', 'app=web,-bad'], /--to-label: "-bad" is not a label key/],
      [['--from-label', '=web'], /--from-label: label "=web" has an empty key/],
      [['--to-label', 'app=a\u0001b'], /--to-label: label .* control character/],
    ];
    for (const [args, want] of cases) {
      const r = await run(['flows', ...args, '--socket', '/nonexistent/tessera.sock']);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err[0], args.join(' ')).toMatch(want);
      expect(r.err[0], args.join(' ')).toMatch(/^tessera flows: .* \[TESSERA_ERR_INVALID_ARGUMENT\]$/);
      expect(r.err).toHaveLength(2);
    }
  });

  it('keeps valid filters working: reason, a system key, a key alone, a value with =', async () => {
    d = await startFakeDaemon({
      flows: [
        flow({ reason: 'ok', remotePort: 40001 }),
        flow({ verdict: 'reject', reason: 'policy', ruleId: 'default:reject', remotePort: 40002 }),
        flow({ verdict: 'reject', reason: 'stale-trust', remoteLabels: ['@sys:image=nginx', 'cmd=a=b'], remotePort: 40003 }),
      ],
    });
    const ports = async (args: string[]): Promise<number[]> => {
      const r = await run(['flows', '--json', ...args, '--socket', d!.socket]);
      expect(r.code, r.err.join('\n')).toBe(0);
      return r.out.map((l) => (JSON.parse(l) as { remotePort: number }).remotePort);
    };
    expect(await ports(['--reason', 'policy'])).toEqual([40002]);
    expect(await ports(['--reason', 'policy', '--reason', 'stale-trust'])).toEqual([40002, 40003]);
    expect(await ports(['--from-label', '@sys:image=nginx'])).toEqual([40003]);
    expect(await ports(['--from-label', 'cmd=a=b'])).toEqual([40003]);
    expect(await ports(['--from-label', 'app'])).toEqual([40001, 40002]);
  });
});
