import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { markStopped, registerEpoch } from '../../../src/daemon/register-epoch.js';

describe('the strike register epoch across daemon runs', () => {
  let dir = '';
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const fresh = () => (dir = mkdtempSync(join(tmpdir(), 'tessera-epoch-')));

  it('a first start refuses nothing; a clean restart refuses what the predecessor could have seen; a crash refuses up to now', () => {
    const d = fresh();
    expect(registerEpoch(d, 1000)).toBe(0);
    markStopped(d, 2000);
    expect(registerEpoch(d, 9000)).toBe(2000);
    // This run never stopped cleanly (kill -9): the next one cannot know what it saw.
    expect(registerEpoch(d, 12000)).toBe(12000);
  });

  it('an unreadable record counts as a crash, and a stop time in the future as well', () => {
    const d = fresh();
    writeFileSync(join(d, 'datapath-epoch.json'), '{not json');
    expect(registerEpoch(d, 5000)).toBe(5000);
    markStopped(d, 99_000);
    expect(registerEpoch(d, 6000)).toBe(6000);
  });
});
