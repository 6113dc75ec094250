import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compilePolicy, type Policy, type PolicyRequest } from '../../../src/policy/index.js';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../../..');

export function fixture(name: string): string {
  return readFileSync(join(ROOT, 'test/fixtures/policy', name), 'utf8');
}

/** Compile or fail the test with every error text. */
export function compile(text: string, file = 'test.yaml'): Policy {
  const r = compilePolicy(text, { file });
  if (!r.ok) throw new Error(`policy did not compile:\n${r.errors.map((e) => e.text).join('\n')}`);
  return r.policy;
}

/** A policy from rule lines (YAML list items, indented by two). */
export function rules(body: string, head = ''): Policy {
  return compile(`version: 1\n${head}rules:\n${body}`);
}

export function pu(...labels: string[]): { labels: readonly string[] } {
  return { labels: Object.freeze([...labels]) };
}

export function req(client: { labels: readonly string[] } | null, server: { labels: readonly string[] } | null, port: number, peerAddr?: string): PolicyRequest {
  return peerAddr === undefined ? { client, server, port } : { client, server, port, peerAddr };
}

/** Errors of a policy expected not to compile. */
export function errorsOf(text: string, file = 'policy.yaml'): string[] {
  const r = compilePolicy(text, { file });
  if (r.ok) throw new Error('policy compiled, but errors were expected');
  return r.errors.map((e) => e.text);
}
