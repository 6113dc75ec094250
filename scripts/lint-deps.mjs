#!/usr/bin/env node
// Enforces the dependency direction of docs/architecture.md on every import under src/:
//   cli -> api (+ the pure identity/policy modules); daemon -> everything but cli;
//   datapath -> packet, identity, policy, learn (the edge table); learn -> policy;
//   nothing imports daemon or cli (only src/bin does);
//   pure modules (packet, identity, policy, learn, datapath/handshake) do no I/O.
// Exits non-zero with one line per violation.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative, dirname, resolve, sep } from 'node:path';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
const src = join(root, 'src');
const SHARED = new Set(['errors.ts', 'marks.ts', 'flow.ts']);
const ALLOWED = {
  packet: ['packet'],
  identity: ['identity'],
  policy: ['policy', 'identity'],
  learn: ['learn', 'policy', 'identity'],
  datapath: ['datapath', 'packet', 'identity', 'policy', 'learn'],
  rules: ['rules'],
  monitors: ['monitors', 'identity'],
  api: ['api', 'identity', 'policy', 'learn'],
  ui: ['ui', 'api'],
  cli: ['cli', 'api', 'identity', 'policy', 'fleet', 'learn'],
  fleet: ['fleet', 'identity'],
  daemon: ['daemon', 'packet', 'identity', 'policy', 'datapath', 'rules', 'monitors', 'api', 'ui', 'fleet', 'learn'],
  bin: ['bin', 'cli', 'daemon', 'api', 'packet', 'identity', 'policy', 'datapath', 'rules', 'monitors', 'fleet', 'learn'],
};
const PURE = [/^packet\//, /^identity\//, /^policy\//, /^learn\//, /^datapath\/handshake\//, /^fleet\/(bundle|layout|operator-key|url|backoff)\.ts$/];
const IO_MODULES = /^(node:)?(fs|fs\/promises|child_process|net|dgram|http|https|http2|worker_threads|cluster|readline|tls)$/;

function walk(dir) {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.ts') ? [p] : [];
  });
}

const problems = [];
for (const file of walk(src)) {
  const rel = relative(src, file).split(sep).join('/');
  const mod = rel.includes('/') ? rel.split('/')[0] : null;
  const text = readFileSync(file, 'utf8');
  const re = /(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s+['"]([^'"]+)['"]/gm;
  for (const m of text.matchAll(re)) {
    const spec = m[1] ?? m[2] ?? m[3];
    if (!spec) continue;
    if (spec.startsWith('.')) {
      const target = relative(src, resolve(dirname(file), spec)).split(sep).join('/');
      if (target.startsWith('..')) {
        problems.push(`${rel}: imports ${spec} from outside src/`);
        continue;
      }
      const tmod = target.includes('/') ? target.split('/')[0] : null;
      if (tmod === null) {
        if (!SHARED.has(target.replace(/\.js$/, '.ts'))) problems.push(`${rel}: imports top-level ${spec}, which is not a shared leaf`);
        continue;
      }
      if (mod === null) {
        problems.push(`${rel}: shared leaf modules must not import ${spec}`);
        continue;
      }
      const allowed = ALLOWED[mod];
      if (!allowed) problems.push(`${rel}: module ${mod} has no dependency rule in scripts/lint-deps.mjs`);
      else if (!allowed.includes(tmod)) problems.push(`${rel}: ${mod} must not import ${tmod} (${spec})`);
    } else if (PURE.some((r) => r.test(rel)) && IO_MODULES.test(spec)) {
      problems.push(`${rel}: pure module imports I/O module ${spec}`);
    }
  }
}
if (problems.length) {
  console.error(`dependency lint: ${problems.length} violation(s)`);
  for (const p of problems) console.error('  ' + p);
  process.exit(1);
}
console.log('dependency lint: ok');
