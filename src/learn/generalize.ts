// Label generalization: from the label sets the PUs presented to the selector a rule should
// use. Per-instance labels (names, ids, hashes) and version-like ones are dropped first; the
// remaining sets are grouped by an identity key (app, ...) plus scope keys (env, namespace,
// ...); inside a group only labels present on every member with one value are kept — the
// smallest stable set — and every drop is written down as evidence. Pure, deterministic.

/** Keys that name one instance: recreated containers get new values. */
const INSTANCE_KEYS = new Set(['@sys:name', '@sys:id', '@sys:pid', '@sys:hostname', '@sys:container', 'name.instance']);
const INSTANCE_KEY = /(^|[._/:-])(id|uid|uuid|instance|instance-id|pod-name|pod-template-hash|controller-revision-hash|hash|hostname)$/i;
const VERSION_KEY = /(^|[._/:-])(version|revision|release|build|commit|sha|git-sha|tag)$/i;
const VERSION_VALUE = /^(v?\d+(\.\d+)+([-+][A-Za-z0-9.+-]*)?|[0-9a-f]{12,})$/i;
/** Keys that name what a PU is, in order of preference. */
export const IDENTITY_KEYS = ['app', 'app.kubernetes.io/name', 'k8s-app', 'component', 'tier', 'role', 'service', 'name'];
/** Keys that scope a group: two apps of one name in two environments are two groups. */
export const SCOPE_KEYS = ['env', 'environment', 'namespace', 'tenant', '@sys:namespace'];

export interface Group {
  /** Stable id for rule names: the identity value, made unique. */
  name: string;
  /** The labels the selector requires (sorted "k=v"). */
  selector: string[];
  /** Distinct PU ids seen (a lower bound when the edge lists overflowed). */
  pus: number;
  /** Distinct label sets seen. */
  sets: number;
  /** Human evidence, e.g. "app stable across 14 PUs; version varied: dropped". */
  evidence: string;
}

const split = (l: string): [string, string] => {
  const i = l.indexOf('=');
  return [l.slice(0, i), l.slice(i + 1)];
};

interface Normalized {
  labels: Map<string, string>;
  /** key → why it was dropped before grouping */
  dropped: Map<string, string>;
}

function normalize(labels: readonly string[]): Normalized {
  const out = new Map<string, string>();
  const dropped = new Map<string, string>();
  for (const l of labels) {
    const [k, v] = split(l);
    if (INSTANCE_KEYS.has(k) || INSTANCE_KEY.test(k)) dropped.set(k, 'per instance');
    else if (VERSION_KEY.test(k) || (VERSION_VALUE.test(v) && !IDENTITY_KEYS.includes(k))) dropped.set(k, 'version-like');
    else if (k === '@sys:image') {
      // The repository is what the image is; the tag or digest is its version.
      const repo = v.replace(/@sha256:[0-9a-f]+$/i, '').replace(/:[^/:]*$/, '');
      if (repo !== v) dropped.set('@sys:image tag', 'version-like');
      out.set(k, repo);
    } else out.set(k, v);
  }
  return { labels: out, dropped };
}

function groupKey(n: Normalized): string {
  const parts: string[] = [];
  const id = IDENTITY_KEYS.find((k) => n.labels.has(k));
  if (id === undefined) {
    // No identity key: the whole user label set (or, without user labels, the system one).
    const user = [...n.labels].filter(([k]) => !k.startsWith('@'));
    const use = user.length > 0 ? user : [...n.labels];
    return use.map(([k, v]) => `${k}=${v}`).sort().join('\n');
  }
  parts.push(`${id}=${n.labels.get(id)}`);
  for (const k of SCOPE_KEYS) if (n.labels.has(k)) parts.push(`${k}=${n.labels.get(k)}`);
  return parts.join('\n');
}

const slug = (s: string): string => s.toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 24) || 'pu';

export interface Generalized {
  /** Group of each observed label set (by the set's sorted "k=v" lines joined with \n). */
  groupOf(labels: readonly string[]): Group;
  groups: Group[];
}

/**
 * Groups the observed label sets. `seen` gives each distinct label set with the PU ids that
 * presented it.
 */
export function generalize(seen: ReadonlyArray<{ labels: readonly string[]; pus: ReadonlySet<string>; more: number }>): Generalized {
  const members = new Map<string, Array<{ n: Normalized; pus: ReadonlySet<string>; more: number; raw: string }>>();
  for (const s of seen) {
    const n = normalize(s.labels);
    const key = groupKey(n);
    let m = members.get(key);
    if (!m) members.set(key, (m = []));
    m.push({ n, pus: s.pus, more: s.more, raw: [...s.labels].sort().join('\n') });
  }
  const byRaw = new Map<string, Group>();
  const groups: Group[] = [];
  const usedNames = new Map<string, number>();
  for (const key of [...members.keys()].sort()) {
    const ms = members.get(key)!;
    const keys = new Set<string>();
    for (const m of ms) for (const k of m.n.labels.keys()) keys.add(k);
    const stable: string[] = [];
    const notes: string[] = [];
    const pus = new Set<string>();
    let more = 0;
    for (const m of ms) {
      for (const p of m.pus) pus.add(p);
      more += m.more;
    }
    // PU ids when the edges carried them; a PU that restarted with a new version is one PU.
    const total = pus.size + more > 0 ? pus.size + more : ms.length;
    for (const k of [...keys].sort()) {
      const vals = new Set(ms.map((m) => m.n.labels.get(k)));
      if (vals.has(undefined)) notes.push(`${k} present on ${ms.filter((m) => m.n.labels.has(k)).length} of ${ms.length} label sets: dropped`);
      else if (vals.size > 1) notes.push(`${k} varied (${vals.size} values): dropped`);
      else stable.push(`${k}=${[...vals][0]}`);
    }
    const instanceDrops = new Map<string, string>();
    for (const m of ms) for (const [k, why] of m.n.dropped) instanceDrops.set(k, why);
    for (const k of [...instanceDrops.keys()].sort()) notes.push(`${k} ${instanceDrops.get(k)}: dropped`);
    // System labels only when the group has no user label (a user's labels say what it is).
    const user = stable.filter((l) => !l.startsWith('@'));
    const selector = user.length > 0 ? user : stable;
    if (user.length > 0 && user.length < stable.length) notes.push('system labels not needed: left out');
    const first = key.split('\n')[0] ?? '';
    const base = slug(first.includes('=') ? first.slice(first.indexOf('=') + 1) : first);
    const n = (usedNames.get(base) ?? 0) + 1;
    usedNames.set(base, n);
    const keyNames = selector.map((l) => split(l)[0]).join(', ') || 'no label';
    const g: Group = {
      name: n === 1 ? base : `${base}-${n}`,
      selector,
      pus: total,
      sets: ms.length,
      evidence: `${keyNames} stable across ${total} PU${total === 1 ? '' : 's'} (${ms.length} label set${ms.length === 1 ? '' : 's'})${notes.length ? `; ${notes.join('; ')}` : ''}`,
    };
    groups.push(g);
    for (const m of ms) byRaw.set(m.raw, g);
  }
  return {
    groups,
    groupOf: (labels) => {
      const g = byRaw.get([...labels].sort().join('\n'));
      if (!g) throw new RangeError('label set was not part of the generalization');
      return g;
    },
  };
}
