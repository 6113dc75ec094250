// The one place in Tessera that spawns the kernel-plumbing commands (iptables-restore,
// iptables-save, ip6tables-*, mount). Everything else receives a CommandRunner, so unit
// tests pass a fake and integration tests a runner prefixed with `ip netns exec NS`.

import { spawn } from 'node:child_process';
import { TesseraError } from '../errors.js';

export interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface CommandRunner {
  /** Run argv, feed `input` on stdin, resolve when it exits 0; otherwise reject with a TesseraError. */
  run(argv: string[], opts?: { input?: string; timeoutMs?: number }): Promise<RunResult>;
  /**
   * Start a long-lived command (e.g. `nft -i`, nft-session.ts) and hand each line of its stdout to
   * `on.line`; `on.exit` is told once when it ends (not after stop()). Optional: fakes need not.
   */
  stream?(argv: string[], on: StreamHandlers, opts?: { stdin?: boolean }): LineStream;
}

export interface StreamHandlers {
  /** Each line of stdout. */
  line(text: string): void;
  /** Each chunk of stderr (default: the first 4 KiB are kept for the exit message). */
  stderr?(chunk: string): void;
  exit(why: string): void;
}

/** A running stream() command. */
export interface LineStream {
  /** Write to its stdin (opened with `stdin: true`; ignored otherwise). */
  write(text: string): void;
  /** Kill it (by its PID); no exit callback follows. */
  stop(): void;
}

export interface CommandRunnerOptions {
  /** Prepended to every argv, e.g. ['ip', 'netns', 'exec', ns] to act inside a namespace. */
  prefix?: string[];
  /** Default timeout per command (ms). */
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const MAX_OUTPUT = 64 * 1024 * 1024;

/** Debian package that provides a binary, for the "install it" hint. */
function packageFor(bin: string): string {
  if (/^ip6?tables/.test(bin)) return 'iptables';
  if (bin === 'ip') return 'iproute2';
  if (bin === 'mount' || bin === 'umount') return 'mount';
  if (bin === 'nft') return 'nftables';
  return bin;
}

function basename(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}

/** Commands whose failure means "the kernel or iptables refused our rules". */
const RULE_WRITERS = /^ip6?tables(-legacy|-nft)?-restore$/;

export function createCommandRunner(options: CommandRunnerOptions = {}): CommandRunner {
  const prefix = [...(options.prefix ?? [])];
  const defaultTimeout = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isInteger(defaultTimeout) || defaultTimeout <= 0) {
    throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `command runner: timeoutMs must be a positive integer, got ${String(options.timeoutMs)}`);
  }

  return {
    stream(argv, on, opts = {}) {
      const full = [...prefix, ...argv];
      const child = spawn(full[0]!, full.slice(1), { stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
      child.stdin?.on('error', () => {}); // EPIPE after it died: its exit tells the story
      let stopped = false;
      let ended = false;
      let rest = '';
      let stderr = '';
      const end = (why: string): void => {
        if (ended) return;
        ended = true;
        if (!stopped) on.exit(why);
      };
      child.stdout!.setEncoding('utf8');
      child.stdout!.on('data', (chunk: string) => {
        const lines = (rest + chunk).split('\n');
        rest = lines.pop() ?? '';
        for (const l of lines) if (!stopped) on.line(l);
      });
      child.stderr!.setEncoding('utf8');
      child.stderr!.on('data', (chunk: string) => {
        if (on.stderr) on.stderr(chunk);
        else if (stderr.length < 4096) stderr += chunk;
      });
      child.on('error', (e) => end(`${argv.join(' ')}: cannot start: ${e.message}`));
      child.on('close', (code, signal) => end(`${argv.join(' ')} exited (${code === null ? `signal ${signal}` : `status ${code}`}): ${stderr.trim().split('\n')[0] || '(no output)'}`));
      return {
        write(text) {
          if (!stopped && !ended) child.stdin?.write(text);
        },
        stop() {
          stopped = true;
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        },
      };
    },
    run(argv, opts = {}) {
      const cmd = argv[0];
      if (!cmd) return Promise.reject(new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', 'command runner: empty argv'));
      const full = [...prefix, ...argv];
      const bin = basename(cmd);
      const shown = argv.join(' ');
      const timeoutMs = opts.timeoutMs ?? defaultTimeout;
      const missing = (name: string, cause?: unknown): TesseraError =>
        new TesseraError('TESSERA_ERR_PREREQ', `${name} not found: install it with apt-get install ${packageFor(name)}`, { cause });

      return new Promise<RunResult>((resolve, reject) => {
        const child = spawn(full[0]!, full.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
        const out: Buffer[] = [];
        const err: Buffer[] = [];
        let size = 0;
        let timedOut = false;
        let settled = false;
        const settle = (f: () => void): void => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          f();
        };
        const timer = setTimeout(() => {
          timedOut = true;
          child.kill('SIGKILL');
        }, timeoutMs);
        const collect = (into: Buffer[]) => (b: Buffer) => {
          size += b.length;
          if (size > MAX_OUTPUT) child.kill('SIGKILL');
          else into.push(b);
        };
        child.stdout.on('data', collect(out));
        child.stderr.on('data', collect(err));
        child.on('error', (e: NodeJS.ErrnoException) => {
          // ENOENT names the first word spawned: the prefix's binary (ip) when there is one.
          settle(() =>
            reject(
              e.code === 'ENOENT'
                ? missing(basename(full[0]!), e)
                : new TesseraError('TESSERA_ERR_COMMAND', `${shown}: cannot start: ${e.message}`, { cause: e }),
            ),
          );
        });
        // A command that exits before reading stdin gives EPIPE; its exit status tells the story.
        child.stdin.on('error', () => {});
        child.stdin.end(opts.input ?? '');
        child.on('close', (code, signal) => {
          const stdout = Buffer.concat(out).toString('utf8');
          const stderr = Buffer.concat(err).toString('utf8');
          settle(() => {
            if (code === 0) return resolve({ stdout, stderr, code: 0 });
            const detail = stderr.trim() || stdout.trim() || '(no output)';
            // `ip netns exec` reports a missing binary on stderr with status 255; a shell uses 127.
            if (code === 127 || /exec of ".*" failed: No such file or directory/.test(stderr)) return reject(missing(bin));
            if (timedOut) return reject(new TesseraError('TESSERA_ERR_COMMAND', `${shown}: timed out after ${timeoutMs} ms: ${detail}`));
            if (size > MAX_OUTPUT) return reject(new TesseraError('TESSERA_ERR_COMMAND', `${shown}: output larger than ${MAX_OUTPUT} bytes`));
            const status = code === null ? `killed by ${signal}` : `exit status ${code}`;
            const codeName = RULE_WRITERS.test(bin) ? 'TESSERA_ERR_RULES' : 'TESSERA_ERR_COMMAND';
            reject(new TesseraError(codeName, `${shown} failed (${status}): ${detail}`));
          });
        });
      });
    },
  };
}
