// Where the daemon's policy comes from: the built-in default, or a YAML file that is
// validated before use and reloaded when it changes (file watch or SIGHUP). A file that
// does not compile is refused with line, column and reason; the running policy stays.

import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { createHash } from 'node:crypto';
import { TesseraError } from '../errors.js';
import { check, compilePolicy, createDefaultPolicy, DEFAULT_POLICY_TEXT, type Policy } from '../policy/index.js';

export interface LoadedPolicy {
  policy: Policy;
  /** Null for the built-in default (workers compile their own copy of it). */
  text: string | null;
  /** Shown by `tessera status`: file and content hash, or the built-in default. */
  name: string;
  /** The file, or "built-in". */
  source: string;
  /** sha256 of the text (12 hex digits), or "default". */
  revision: string;
  /** `tessera policy check`'s warnings (shadowed or dead rules...), one line each. */
  warnings: string[];
}

export function builtinPolicy(): LoadedPolicy {
  return { policy: createDefaultPolicy(), text: null, name: 'built-in default (same user labels)', source: 'built-in', revision: 'default', warnings: [] };
}

/** Read and compile a policy file; throws TESSERA_ERR_POLICY listing every error. */
export function loadPolicyFile(file: string): LoadedPolicy {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new TesseraError('TESSERA_ERR_POLICY', `policy file ${file}: ${(err as Error).message}`, { cause: err });
  }
  const r = compilePolicy(text, { file });
  if (!r.ok) throw new TesseraError('TESSERA_ERR_POLICY', `policy file refused:\n  ${r.errors.map((e) => e.text).join('\n  ')}`);
  const hash = createHash('sha256').update(text).digest('hex').slice(0, 12);
  const warnings = check(text, { file }).warnings.map((w) => w.text);
  return { policy: r.policy, text, name: `${file} (sha256 ${hash})`, source: file, revision: hash, warnings };
}

/** Compile a policy text that came with a fleet bundle; throws TESSERA_ERR_POLICY like a file. */
export function loadPolicyText(text: string, source: string, revision: string, name: string): LoadedPolicy {
  const r = compilePolicy(text, { file: source });
  if (!r.ok) throw new TesseraError('TESSERA_ERR_POLICY', `policy refused:\n  ${r.errors.map((e) => e.text).join('\n  ')}`);
  const warnings = check(text, { file: source }).warnings.map((w) => w.text);
  return { policy: r.policy, text, name, source, revision, warnings };
}

/**
 * Watch the file's directory (editors replace files by rename) and call `onChange` once per
 * burst of changes. Returns a function that stops watching.
 */
export function watchPolicyFile(file: string, onChange: () => void): () => void {
  let timer: NodeJS.Timeout | null = null;
  let watcher: FSWatcher | null = null;
  try {
    watcher = watch(dirname(file), (_event, name) => {
      if (name !== null && name !== basename(file)) return;
      if (timer) clearTimeout(timer);
      timer = setTimeout(onChange, 150);
    });
  } catch {
    // No inotify here: SIGHUP still reloads.
  }
  return () => {
    if (timer) clearTimeout(timer);
    watcher?.close();
  };
}

export { DEFAULT_POLICY_TEXT };
