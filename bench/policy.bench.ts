// Microbenchmark of policy evaluation, the per-handshake cost: npx tsx bench/policy.bench.ts
// (tsx adds ~10-40 ns per cross-module call; `npm run build; node dist/bench/policy.bench.js`
// for production-like numbers).
// Prints median ns per decision for 1, 10 and 50 rules, worst case (the deciding rule is the
// last one, or none matches and every rule is tried), against the hand-written same-labels
// function that was the whole policy before the language existed, and the compile time.

import { compilePolicy, createDefaultPolicy, type Policy, type PolicyRequest } from '../src/policy/index.js';

import { bench as timeBench, BATCHES } from './lib/micro.js';

const bench = (name: string, fn: () => unknown): number => timeBench(name, fn, 58);


/** n rules of mixed shapes; only the last one admits app=api → app=db on 5432. */
function policyText(n: number): string {
  const rules: string[] = [];
  for (let i = 0; i < n - 1; i++) {
    switch (i % 5) {
      case 0:
        rules.push(`  - id: r${i}\n    from: {app: svc${i}, env: [prod, staging]}\n    to: {app: db}\n    ports: [5432]\n    action: allow`);
        break;
      case 1:
        rules.push(`  - id: r${i}\n    from: {team: {exists: true}, tier: {notIn: [web, edge]}}\n    to: {app: cache${i}}\n    ports: ["6000-6999"]\n    action: allow`);
        break;
      case 2:
        rules.push(`  - id: r${i}\n    to: {app: web${i}}\n    fromNetworks: [10.${i}.0.0/16, "2001:db8:${i}::/48"]\n    ports: [80, 443]\n    action: allow`);
        break;
      case 3:
        rules.push(`  - id: r${i}\n    from: {app: batch${i}}\n    toNetworks: [0.0.0.0/0]\n    ports: [443]\n    action: allow`);
        break;
      default:
        rules.push(`  - id: r${i}\n    from: {app: {ne: api}}\n    to: {app: db, env: {in: [prod]}}\n    action: reject`);
    }
  }
  rules.push(`  - id: api-to-db\n    from: {app: api}\n    to: {app: db}\n    ports: [5432]\n    action: allow`);
  return `version: 1\nname: bench-${n}\nrules:\n${rules.join('\n')}\n`;
}

function compileOrDie(text: string): Policy {
  const r = compilePolicy(text, { file: 'bench.yaml' });
  if (!r.ok) throw new Error(r.errors.map((e) => e.text).join('\n'));
  return r.policy;
}

// The pre-language default, verbatim: a string key of the user labels, compared.
function userLabelKey(labels: readonly string[]): string {
  let key = '';
  for (const l of labels) if (l.charCodeAt(0) !== 64) key += l + '\n';
  return key;
}
function handWritten(req: PolicyRequest): { allow: boolean; ruleId: string } {
  if (!req.client || !req.server) return { allow: false, ruleId: 'default:peer-unprotected' };
  return userLabelKey(req.client.labels) === userLabelKey(req.server.labels) ? { allow: true, ruleId: 'same' } : { allow: false, ruleId: 'differ' };
}

// Frozen arrays, as the token verifier and the PU table hand them out (same object each time).
const api = { labels: Object.freeze(['@sys:host=a', 'app=api', 'env=prod', 'team=core']) };
const db = { labels: Object.freeze(['@sys:host=b', 'app=db', 'env=prod', 'team=core']) };
const dbTwin = { labels: Object.freeze(['@sys:host=c', 'app=db', 'env=prod', 'team=core']) };
const hit: PolicyRequest = { client: api, server: db, port: 5432 };
const miss: PolicyRequest = { client: api, server: db, port: 9999 };
const untagged: PolicyRequest = { client: null, server: db, port: 5432, peerAddr: '192.0.2.7' };
const untagged6: PolicyRequest = { client: null, server: db, port: 5432, peerAddr: '2001:db8:ffff::7' };

console.log(`policy evaluation microbenchmark — node ${process.version}, median of ${BATCHES} batches`);
const def = createDefaultPolicy();
const sameReq: PolicyRequest = { client: dbTwin, server: db, port: 5432 };
const base = bench('hand-written same-labels function (the old default)', () => handWritten(sameReq));
const d = bench('default policy file (sameLabels: true)', () => def.ingress(sameReq));
console.log(`${''.padEnd(58)} ratio ${(d / base).toFixed(2)}`);
for (const n of [1, 10, 50]) {
  const p = compileOrDie(policyText(n));
  if (!p.ingress(hit).allow || p.ingress(miss).allow) throw new Error('bench policy does not decide as intended');
  bench(`${n} rules, ingress, last rule allows`, () => p.ingress(hit));
  bench(`${n} rules, egress, last rule allows`, () => p.egress(hit));
  bench(`${n} rules, no rule matches (default reject)`, () => p.ingress(miss));
  bench(`${n} rules, untagged IPv4 peer, no network matches`, () => p.ingress(untagged));
  bench(`${n} rules, untagged IPv6 peer, no network matches`, () => p.ingress(untagged6));
}
const text50 = policyText(50);
bench('compile 50 rules (parse + validate + compile)', () => compileOrDie(text50));
