// Creating directories for key material and state without Node's recursive mkdir: on a path
// under /proc, mkdir(2) answers ENOENT for a parent that exists, and Node's
// `mkdirSync(p, { recursive: true })` retries that forever (`tessera ca init --out /proc/x`
// spun at 100 % CPU). Here each component is made once, so every failure ends in one error.

import { mkdirSync, statSync } from 'node:fs';
import { resolve, sep } from 'node:path';
import { TesseraError, asTesseraError } from '../errors.js';

export function ensureDir(path: string, mode = 0o700): void {
  const parts = resolve(path).split(sep).filter(Boolean);
  let at = '';
  for (const part of parts) {
    at += sep + part;
    try {
      mkdirSync(at, { mode });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw asTesseraError(err);
      let isDir = false;
      try {
        isDir = statSync(at).isDirectory();
      } catch (e) {
        throw asTesseraError(e);
      }
      if (!isDir) throw new TesseraError('TESSERA_ERR_FILESYSTEM', `cannot create directory ${path}: ${at} is not a directory (ENOTDIR)`);
    }
  }
}
