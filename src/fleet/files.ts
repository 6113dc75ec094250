// File I/O for the fleet: operator key files (refused when group/world readable, like the
// daemon's other key files) and atomic writes (temp file, fsync, rename, fsync directory).

import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, writeSync, unlinkSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { TesseraError } from '../errors.js';
import { parseOperatorKey, parseOperatorPublic, type OperatorKey, type OperatorPublicKey } from './operator-key.js';

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new TesseraError('TESSERA_ERR_KEY_FILE', `${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
}

/** Read the operator's private key; refused when the file is readable by group or others. */
export function readOperatorKeyFile(path: string): OperatorKey {
  const text = readText(path, 'operator key');
  const mode = statSync(path).mode;
  if ((mode & 0o077) !== 0) {
    throw new TesseraError('TESSERA_ERR_KEY_FILE', `operator key ${path} is readable by group or others (mode ${(mode & 0o777).toString(8)}): run chmod 600 ${path}`);
  }
  try {
    return parseOperatorKey(text);
  } catch (err) {
    throw new TesseraError('TESSERA_ERR_KEY_FILE', `${path}: ${(err as Error).message}`);
  }
}

export function readOperatorPublicFile(path: string): OperatorPublicKey {
  try {
    return parseOperatorPublic(readText(path, 'operator public key'));
  } catch (err) {
    if (err instanceof TesseraError && err.message.startsWith('operator public key /')) throw err;
    throw new TesseraError('TESSERA_ERR_KEY_FILE', `${path}: ${(err as Error).message}`);
  }
}

/** Write `data` to `path` so a reader sees the old or the new file, never a torn one. */
export function writeFileAtomic(path: string, data: string | Buffer, mode = 0o600): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, `.${basename(path)}.${process.pid}.tmp`);
  const fd = openSync(tmp, 'w', mode);
  try {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      /* already gone */
    }
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, path);
  const dfd = openSync(dir, 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}
