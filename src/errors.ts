// Every error Tessera raises has a class, a stable code and an optional cause. ONE table says,
// per code, what it means, the process exit status the CLI and daemon end with, and the HTTP
// status the local API answers with. test/unit/errors.test.ts checks that docs/errors.md
// lists each code with the same two statuses.

interface ErrorSpec {
  readonly description: string;
  /** Exit status of a command that fails with this code (2: bad usage; 70: internal). */
  readonly exit: number;
  /** HTTP status of an API request that fails with this code. */
  readonly http: number;
}

export const ErrorCodes = {
  TESSERA_ERR_INVALID_ARGUMENT: { description: 'a command-line argument or option value is invalid', exit: 2, http: 400 },
  TESSERA_ERR_INVALID_CONFIG: { description: 'a daemon setting is invalid', exit: 1, http: 500 },
  TESSERA_ERR_INVALID_LABEL: { description: 'a label is not key=value with allowed characters', exit: 1, http: 400 },
  TESSERA_ERR_NATIVE_LOAD: { description: 'the NFQUEUE addon could not be loaded', exit: 1, http: 500 },
  TESSERA_ERR_QUEUE: { description: 'the kernel refused an NFQUEUE operation', exit: 1, http: 500 },
  TESSERA_ERR_SOCK_DIAG: { description: 'the kernel refused the sock_diag query for listening sockets', exit: 1, http: 500 },
  TESSERA_ERR_RAW_SOCKET: { description: 'a raw socket for UDP control packets could not be made in a container namespace', exit: 1, http: 500 },
  TESSERA_ERR_RULES: { description: 'iptables-restore rejected a rule transaction', exit: 1, http: 500 },
  TESSERA_ERR_CGROUP: { description: 'a net_cls cgroup operation failed', exit: 1, http: 500 },
  TESSERA_ERR_COMMAND: { description: 'an external command failed', exit: 1, http: 500 },
  TESSERA_ERR_PREREQ: { description: 'a prerequisite (binary, kernel feature, privilege) is missing', exit: 1, http: 500 },
  TESSERA_ERR_KEY_FILE: { description: 'a key, certificate or secret file is missing, malformed or too permissive', exit: 1, http: 500 },
  TESSERA_ERR_FILESYSTEM: { description: 'a file or directory could not be read, written or created', exit: 1, http: 500 },
  TESSERA_ERR_TOKEN: { description: 'a token could not be issued or parsed', exit: 1, http: 400 },
  TESSERA_ERR_POLICY: { description: 'a policy file is invalid', exit: 1, http: 400 },
  TESSERA_ERR_API: { description: 'the local API refused or failed a request', exit: 1, http: 400 },
  TESSERA_ERR_DAEMON_UNREACHABLE: { description: 'the CLI could not reach the daemon socket', exit: 1, http: 503 },
  TESSERA_ERR_PU: { description: 'a PU could not be created or found', exit: 1, http: 400 },
  TESSERA_ERR_DOCKER: { description: 'the Docker engine could not be reached or answered an error', exit: 1, http: 502 },
  TESSERA_ERR_LOCKED: { description: 'another tessera daemon (or cleanup) holds this network namespace or cgroup root', exit: 1, http: 409 },
  TESSERA_ERR_ENROLL: { description: 'a container could not be enrolled before its start (runtime shim)', exit: 1, http: 500 },
  TESSERA_ERR_INTERNAL: { description: 'an unexpected internal error (a bug): the message says where', exit: 70, http: 500 },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ErrorCodes;

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ErrorCodes, code);
}

/** The process exit status for a command that failed with `code`. */
export function exitCodeOf(code: ErrorCode): number {
  return ErrorCodes[code].exit;
}

/** The HTTP status the local API answers a request that failed with `code`. */
export function httpStatusOf(code: ErrorCode): number {
  return ErrorCodes[code].http;
}

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

const ERRNO_TEXT: Record<string, string> = {
  ENOENT: 'no such file or directory',
  ENOTDIR: 'a part of the path is not a directory',
  EISDIR: 'is a directory',
  EEXIST: 'already exists',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on device',
  ELOOP: 'too many symbolic links',
  ENAMETOOLONG: 'name too long',
};

/**
 * Any thrown value as one TesseraError: ours as they are; a Node filesystem error
 * (errno code, syscall, path) as TESSERA_ERR_FILESYSTEM naming the path and the errno;
 * anything else as TESSERA_ERR_INTERNAL. So a person reads one line, never a stack trace.
 */
export function asTesseraError(err: unknown): TesseraError {
  if (err instanceof TesseraError) return err;
  const e = err as NodeJS.ErrnoException | undefined;
  if (e && typeof e === 'object' && typeof e.code === 'string' && /^E[A-Z]+$/.test(e.code) && typeof e.syscall === 'string') {
    const what = ERRNO_TEXT[e.code] ?? e.code;
    const verb = e.syscall === 'open' || e.syscall === 'read' ? 'open' : e.syscall;
    return new TesseraError('TESSERA_ERR_FILESYSTEM', `cannot ${verb}${e.path ? ` ${e.path}` : ''}: ${what} (${e.code})`, { cause: err });
  }
  return new TesseraError('TESSERA_ERR_INTERNAL', errorMessage(err), { cause: err });
}
