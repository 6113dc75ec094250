import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { check } from '../../../src/policy/index.js';
import { MODE_KEYS, OPERATORS, RULE_KEYS, TOP_KEYS } from '../../../src/policy/ast.js';
import { ROOT } from './helpers.js';
import { PU_MODES } from '../../../src/policy/modes.js';

const schema = JSON.parse(readFileSync(join(ROOT, 'policy/schema.json'), 'utf8'));

describe('policy/schema.json and the validator agree', () => {
  it('is a closed 2020-12 schema requiring version and rules', () => {
    expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(schema.additionalProperties).toBe(false);
    expect(schema.required).toEqual(['version', 'rules']);
  });

  it('lists exactly the keys the validator accepts', () => {
    expect(Object.keys(schema.properties).sort()).toEqual([...TOP_KEYS].sort());
    expect(Object.keys(schema.$defs.rule.properties).sort()).toEqual([...RULE_KEYS].sort());
    expect(Object.keys(schema.properties.modes.items.properties).sort()).toEqual([...MODE_KEYS].sort());
    const ops = schema.$defs.selector.additionalProperties.oneOf[2].properties;
    expect(Object.keys(ops).sort()).toEqual([...OPERATORS].sort());
  });

  it('has the same enums', () => {
    expect(schema.$defs.rule.properties.action.enum).toEqual(['allow', 'reject', 'observe']);
    expect(schema.$defs.rule.properties.reject.enum).toEqual(['reset', 'drop']);
    expect(schema.$defs.rule.properties.direction.enum).toEqual(['ingress', 'egress', 'both']);
    expect([...schema.$defs.mode.enum].sort()).toEqual([...PU_MODES].sort());
  });
});

describe('docs/policy.md', () => {
  const doc = readFileSync(join(ROOT, 'docs/policy.md'), 'utf8');
  const blocks = [...doc.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);

  it('has complete example policies', () => {
    expect(blocks.filter((b) => b.startsWith('version: 1')).length).toBeGreaterThanOrEqual(4);
  });

  it('every complete example policy checks without errors or warnings', () => {
    for (const b of blocks.filter((x) => x.startsWith('version: 1'))) {
      const r = check(b, { file: 'docs/policy.md' });
      expect(r.errors.map((e) => e.text), b).toEqual([]);
      expect(r.warnings.map((e) => e.text), b).toEqual([]);
    }
  });
});
