// The version is package.json's, found by walking up from this module: the same code runs
// from src/ (tests) and from dist/src/ (the installed command).

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | undefined;

export function version(): string {
  if (cached) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++, dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'tessera' && pkg.version) return (cached = pkg.version);
    } catch {
      // not here: one level up
    }
  }
  return (cached = 'unknown');
}
