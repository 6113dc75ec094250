// Labels are the identity of a PU: "key=value" strings. Their canonical form (sorted,
// deduplicated, frozen) is what a token signs, so two hosts that agree on the label set
// always produce the same bytes and the same policy answer.
//
// Rules (docs/identity.md repeats them for users):
// - key: 1..63 characters of [A-Za-z0-9._/-], starting with a letter or digit.
// - system key: '@' followed by 1..63 characters of [A-Za-z0-9._/:-] starting with a letter
//   or digit, e.g. "@sys:image". Only monitors add them; users cannot (parseUserLabel).
// - value: 0..255 UTF-8 bytes, no control characters (C0, DEL, C1) and no lone surrogates.
//   '=' IS allowed in a value: keys never contain '=', so "k=a=b" splits unambiguously at
//   the first '=' into key "k" and value "a=b" (values such as base64 or "cmd=x" stay usable).

import { TesseraError } from '../errors.js';

export interface Label {
  readonly key: string;
  readonly value: string;
}

/** A canonical label set: sorted by key, one value per key, frozen. */
export type CanonicalLabels = readonly string[];

const USER_KEY = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$/;
const SYSTEM_KEY = /^@[A-Za-z0-9][A-Za-z0-9._/:-]{0,62}$/;
const BAD_VALUE_CHAR = /[\p{Cc}\p{Cs}]/u;
const MAX_VALUE_BYTES = 255;

function invalid(message: string): TesseraError {
  return new TesseraError('TESSERA_ERR_INVALID_LABEL', message);
}

function show(s: string): string {
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}...` : s);
}

/** True for keys reserved to the system ("@..."). */
export function isSystemKey(key: string): boolean {
  return key.startsWith('@');
}

function checkKey(key: string, raw: string): void {
  if (key.length === 0) throw invalid(`label ${show(raw)} has an empty key: write key=value`);
  if (isSystemKey(key)) {
    if (!SYSTEM_KEY.test(key)) {
      throw invalid(`label ${show(raw)}: a system key is '@' then 1..63 characters of [A-Za-z0-9._/:-] starting with a letter or digit`);
    }
    return;
  }
  if (key.length > 63) throw invalid(`label ${show(raw)}: key is ${key.length} characters, at most 63 are allowed`);
  if (!/^[A-Za-z0-9]/.test(key)) throw invalid(`label ${show(raw)}: key must start with a letter or digit`);
  if (!USER_KEY.test(key)) throw invalid(`label ${show(raw)}: key may contain only letters, digits and . _ / -`);
}

function checkValue(value: string, raw: string): void {
  if (BAD_VALUE_CHAR.test(value)) throw invalid(`label ${show(raw)}: value contains a control character or a lone surrogate`);
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes > MAX_VALUE_BYTES) throw invalid(`label ${show(raw)}: value is ${bytes} bytes, at most ${MAX_VALUE_BYTES} are allowed`);
}

/** Parses "key=value" (user or system key). Throws TESSERA_ERR_INVALID_LABEL. */
export function parseLabel(text: string): Label {
  if (typeof text !== 'string') throw invalid(`a label must be a string "key=value", got ${typeof text}`);
  const eq = text.indexOf('=');
  if (eq < 0) throw invalid(`label ${show(text)} has no '=': write key=value (the value may be empty: key=)`);
  const key = text.slice(0, eq);
  const value = text.slice(eq + 1);
  checkKey(key, text);
  checkValue(value, text);
  return Object.freeze({ key, value });
}

/** Parses a label given by a user (CLI, API, docker -l): system keys ("@...") are refused. */
export function parseUserLabel(text: string): Label {
  const label = parseLabel(text);
  if (isSystemKey(label.key)) {
    throw invalid(`label ${show(text)}: keys starting with '@' are reserved for labels the system adds`);
  }
  return label;
}

function toLabel(l: string | Label): Label {
  if (typeof l === 'string') return parseLabel(l);
  if (l === null || typeof l !== 'object' || typeof l.key !== 'string' || typeof l.value !== 'string') {
    throw invalid('a label must be "key=value" or {key, value} with string fields');
  }
  const raw = `${l.key}=${l.value}`;
  if (l.key.includes('=')) throw invalid(`label ${show(raw)}: key must not contain '='`);
  checkKey(l.key, raw);
  checkValue(l.value, raw);
  return l;
}

function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Sorted (by key, UTF-16 code unit order), deduplicated, frozen "k=v" strings.
 * The same key with two different values is an error, not a silent choice.
 */
export function canonicalLabels(labels: Iterable<string | Label>): CanonicalLabels {
  const byKey = new Map<string, string>();
  for (const l of labels) {
    const { key, value } = toLabel(l);
    const prev = byKey.get(key);
    if (prev !== undefined && prev !== value) {
      throw invalid(`label key ${show(key)} has two values, ${show(prev)} and ${show(value)}: a key may appear once`);
    }
    byKey.set(key, value);
  }
  const keys = [...byKey.keys()].sort(compareKeys);
  return Object.freeze(keys.map((k) => `${k}=${byKey.get(k) as string}`));
}

/** The labels a user gave (drops system "@..." labels); keeps order. */
export function userLabels(labels: readonly string[]): CanonicalLabels {
  return Object.freeze(labels.filter((l) => !l.startsWith('@')));
}

/**
 * True when both sets hold the same labels. Identical arrays (the usual case: canonical
 * token claims against the canonical PU table) answer without allocating; otherwise both
 * are canonicalised, and a set that is invalid equals no other set.
 */
export function labelsEqual(a: readonly string[], b: readonly string[]): boolean {
  if (a.length === b.length) {
    let same = true;
    for (let i = 0; i < a.length; i++) {
      if (a[i] !== b[i]) {
        same = false;
        break;
      }
    }
    if (same) return true;
  }
  let ca: CanonicalLabels;
  let cb: CanonicalLabels;
  try {
    ca = canonicalLabels(a);
    cb = canonicalLabels(b);
  } catch {
    return false;
  }
  if (ca.length !== cb.length) return false;
  for (let i = 0; i < ca.length; i++) if (ca[i] !== cb[i]) return false;
  return true;
}

/**
 * True when `labels` is already canonical: every entry valid, keys strictly increasing.
 * Verifiers use it on token claims so a signed but non-canonical set is refused.
 */
export function isCanonical(labels: readonly unknown[]): boolean {
  let prevKey: string | null = null;
  for (const l of labels) {
    if (typeof l !== 'string') return false;
    let key: string;
    try {
      key = parseLabel(l).key;
    } catch {
      return false;
    }
    if (prevKey !== null && compareKeys(prevKey, key) >= 0) return false;
    prevKey = key;
  }
  return true;
}
