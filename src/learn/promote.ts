// `tessera policy promote SELECTOR`: move the PUs a selector names one step along
// learn → audit → enforce by editing the policy file's `modes` list (comments and the rest
// of the file kept). The entry whose select is exactly the selector is changed; without one,
// a new entry is put first so that it wins. The daemon's file watch applies the result
// without a restart. Pure: text in, text out.

import { isMap, isSeq, parseDocument, YAMLMap, YAMLSeq } from 'yaml';
import { TesseraError } from '../errors.js';
import { compiledOf } from '../policy/compile.js';
import { compilePolicy } from '../policy/index.js';
import { modeOf, nextMode, PU_MODES, type PuMode } from '../policy/modes.js';
import { labelInfo } from '../policy/selector.js';

export interface Promotion {
  readonly text: string;
  readonly from: PuMode;
  readonly to: PuMode;
  /** The selector as written in the file. */
  readonly selector: Record<string, string>;
}

/** "app=api,env=prod" → {app: 'api', env: 'prod'}. */
export function parseSelectorArg(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of s.split(',').map((p) => p.trim()).filter((p) => p !== '')) {
    const i = part.indexOf('=');
    if (i <= 0) throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `selector "${s}": write key=value pairs separated by commas, e.g. app=api,env=prod`);
    out[part.slice(0, i)] = part.slice(i + 1);
  }
  if (Object.keys(out).length === 0) throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', 'promote needs a selector such as app=api');
  return out;
}

function sameSelector(node: unknown, sel: Record<string, string>): boolean {
  if (!isMap(node)) return false;
  const keys = Object.keys(sel);
  if (node.items.length !== keys.length) return false;
  return keys.every((k) => {
    const v = node.get(k);
    return typeof v === 'string' && v === sel[k];
  });
}

export function promoteText(text: string, sel: Record<string, string>, to?: PuMode): Promotion {
  const compiled = compilePolicy(text);
  if (!compiled.ok) throw new TesseraError('TESSERA_ERR_POLICY', compiled.errors.map((e) => e.text).join('\n'));
  const cp = compiledOf.get(compiled.policy)!;
  const doc = parseDocument(text, { schema: 'failsafe' });
  const root = doc.contents;
  if (!isMap(root)) throw new TesseraError('TESSERA_ERR_POLICY', 'the policy is not a mapping');
  let modes = root.get('modes', true) as unknown;
  if (modes === undefined || modes === null) {
    modes = new YAMLSeq();
    (root as unknown as YAMLMap).set('modes', modes);
  }
  if (!isSeq(modes)) throw new TesseraError('TESSERA_ERR_POLICY', 'modes is not a list');
  const seq = modes as YAMLSeq;
  const entry = seq.items.find((it) => isMap(it) && sameSelector(it.get('select', true), sel)) as YAMLMap | undefined;
  const labels = Object.entries(sel).map(([k, v]) => `${k}=${v}`);
  const from: PuMode = entry ? ((PU_MODES as readonly string[]).includes(String(entry.get('mode'))) ? (String(entry.get('mode')) as PuMode) : 'enforce') : modeOf(cp, labelInfo(labels));
  const target = to ?? nextMode(from);
  if (entry) entry.set('mode', target as never);
  else {
    if (target === from) throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `PUs with ${labels.join(',')} already run in ${from} mode`);
    const m = new YAMLMap();
    const s = new YAMLMap();
    s.flow = true;
    for (const [k, v] of Object.entries(sel)) s.set(k, v);
    m.set('select', s);
    m.set('mode', target);
    seq.items.unshift(m);
  }
  const out = doc.toString();
  const check = compilePolicy(out);
  if (!check.ok) throw new TesseraError('TESSERA_ERR_POLICY', `the promoted policy does not compile: ${check.errors.map((e) => e.text).join('; ')}`);
  return { text: out, from, to: target, selector: sel };
}
