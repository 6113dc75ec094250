// The reason codes a flow record can carry (docs/errors.md, "Reason codes"), as a value the
// CLI can check `tessera flows --reason` against. The datapath's `Reason` union
// (src/datapath/handshake/types.ts) is the table; src/cli may not import the datapath, so
// test/unit/cli/flows-filters.test.ts fails (type check and run) when a code is added there
// and not here: the filter never refuses a real code (codes are added, never renamed).

export const REASON_CODES = [
  'ok',
  'missing-token',
  'malformed',
  'bad-signature',
  'untrusted-issuer',
  'expired',
  'not-yet-valid',
  'bad-mac',
  'replay',
  'missing-proof',
  'policy',
  'audit',
  'learn',
  'no-pu',
  'no-state',
  'too-large',
  'bad-packet',
  'fast-open',
  'simultaneous-open',
  'rate-limited',
  'version',
  'stale',
  'restarted',
  'register-full',
  'revoked',
  'label-not-allowed',
  'stale-trust',
  'bad-host-key',
  'no-host-key',
  'retry',
] as const;
