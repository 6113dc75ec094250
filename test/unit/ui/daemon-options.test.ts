// `tessera daemon --ui`: off by default, loopback for a bare port, and a non-loopback address
// refused before anything starts unless --ui-token-file is given.

import { describe, expect, it } from 'vitest';
import { TesseraError } from '../../../src/errors.js';
import { parseDaemonArgs } from '../../../src/bin/daemon.js';

describe('tessera daemon --ui', () => {
  it('is off unless given; a bare port listens on loopback', () => {
    expect(parseDaemonArgs(['--psk-file', 'x'])).not.toHaveProperty('ui');
    expect(parseDaemonArgs(['--psk-file', 'x', '--ui', '9090'])).toMatchObject({ ui: { listen: { host: '127.0.0.1', port: 9090 } } });
    expect(parseDaemonArgs(['--psk-file', 'x', '--ui', '[::1]:9090'])).toMatchObject({ ui: { listen: { host: '::1', port: 9090 } } });
  });

  it('refuses a non-loopback address without a token file: a usage error that names the fix', () => {
    let err: unknown;
    try {
      parseDaemonArgs(['--psk-file', 'x', '--ui', '0.0.0.0:9090']);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TesseraError);
    expect((err as TesseraError).code).toBe('TESSERA_ERR_INVALID_ARGUMENT');
    expect((err as Error).message).toMatch(/--ui 0\.0\.0\.0:9090 listens beyond this host and needs --ui-token-file FILE/);
    expect(parseDaemonArgs(['--psk-file', 'x', '--ui', '0.0.0.0:9090', '--ui-token-file', '/etc/tessera/ui.token'])).toMatchObject({
      ui: { listen: { host: '0.0.0.0', port: 9090 }, tokenFile: '/etc/tessera/ui.token' },
    });
  });

  it('refuses an address that is not one', () => {
    expect(() => parseDaemonArgs(['--psk-file', 'x', '--ui', 'example.com:80'])).toThrow(/--ui/);
  });
});
