// Every error Tessera raises has a class, a stable code and an optional cause.
// test/unit/errors.test.ts checks that each code below is documented in docs/errors.md.

export const ErrorCodes = {
  TESSERA_ERR_INVALID_ARGUMENT: 'a command-line argument or option value is invalid',
  TESSERA_ERR_INVALID_CONFIG: 'a daemon setting is invalid',
  TESSERA_ERR_INVALID_LABEL: 'a label is not key=value with allowed characters',
  TESSERA_ERR_NATIVE_LOAD: 'the NFQUEUE addon could not be loaded',
  TESSERA_ERR_QUEUE: 'the kernel refused an NFQUEUE operation',
  TESSERA_ERR_SOCK_DIAG: 'the kernel refused the sock_diag query for listening sockets',
  TESSERA_ERR_RULES: 'iptables-restore rejected a rule transaction',
  TESSERA_ERR_CGROUP: 'a net_cls cgroup operation failed',
  TESSERA_ERR_COMMAND: 'an external command failed',
  TESSERA_ERR_PREREQ: 'a prerequisite (binary, kernel feature, privilege) is missing',
  TESSERA_ERR_KEY_FILE: 'a key, certificate or secret file is missing, malformed or too permissive',
  TESSERA_ERR_TOKEN: 'a token could not be issued or parsed',
  TESSERA_ERR_POLICY: 'a policy file is invalid',
  TESSERA_ERR_API: 'the local API refused or failed a request',
  TESSERA_ERR_DAEMON_UNREACHABLE: 'the CLI could not reach the daemon socket',
  TESSERA_ERR_PU: 'a PU could not be created or found',
  TESSERA_ERR_DOCKER: 'the Docker engine could not be reached or answered an error',
  TESSERA_ERR_LOCKED: 'another tessera daemon (or cleanup) holds this network namespace or cgroup root',
  TESSERA_ERR_ENROLL: 'a container could not be enrolled before its start (runtime shim)',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export class TesseraError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TesseraError';
    this.code = code;
  }
}

/** Narrow an unknown thrown value to a message without losing non-Error throws. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
