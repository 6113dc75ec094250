// A missing NFQUEUE addon is reported on one line that says what to run: node-gyp-build's
// own error spans lines ("No native build was found ...\n    loaded from: ..."), and the
// daemon and the CLI print an error's message as their one line.

import { describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { addonLoadMessage } from '../../../src/datapath/native.js';
import { TesseraError } from '../../../src/errors.js';

const require = createRequire(import.meta.url);
const nativeDir = fileURLToPath(new URL('../../../native/', import.meta.url));

describe('the missing-addon message', () => {
  it('is one line naming the loader directory, the first line of the cause, and the command to run', () => {
    // A copy of the loader in a directory with no build: node-gyp-build finds nothing.
    const dir = mkdtempSync(join(nativeDir, '..', 'node_modules', '.tessera-native-msg-'));
    try {
      const loader = join(dir, 'index.cjs');
      copyFileSync(join(nativeDir, 'index.cjs'), loader);
      let caught: unknown;
      try {
        require(loader);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(Error);
      expect((caught as Error).message).toContain('\n'); // what this message replaces
      const m = addonLoadMessage(caught, loader);
      expect(m).not.toMatch(/[\r\n]/);
      expect(m).toMatch(new RegExp(`^cannot load the NFQUEUE addon \\(tessera_nfq\\.node\\) for ${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: No native build was found for platform=\\S+ arch=\\S+ .*; run \`npm rebuild\` in the Tessera directory \\(it needs: apt-get install -y libnetfilter-queue-dev libmnl-dev pkg-config build-essential\\)$`));
      expect(m).not.toContain('loaded from');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('takes any thrown value: a string, an error without a cause', () => {
    expect(addonLoadMessage('boom\nmore', '/opt/tessera/native/index.cjs')).toBe(
      'cannot load the NFQUEUE addon (tessera_nfq.node) for /opt/tessera/native: boom; run `npm rebuild` in the Tessera directory (it needs: apt-get install -y libnetfilter-queue-dev libmnl-dev pkg-config build-essential)',
    );
    const e = new TesseraError('TESSERA_ERR_NATIVE_LOAD', 'x', { cause: new Error('libnetfilter_queue.so.1: cannot open shared object file.\n') });
    expect(addonLoadMessage(e, '/n/index.cjs')).toMatch(/for \/n: libnetfilter_queue\.so\.1: cannot open shared object file; run `npm rebuild`/);
  });
});
