// Fail-static: the last verified bundles on disk, exactly as signed (re-verified when read,
// so a file edited on the host is refused like a forged etcd value), plus where the follower
// was in etcd (cluster id, revision) so a restart can resume its watch instead of relisting.

import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BundleKind } from './layout.js';
import { writeFileAtomic } from './files.js';

export interface FollowPoint {
  clusterId: string;
  revision: number;
  savedAt: string;
}

export interface BundleCache {
  readonly dir: string;
  loadBundle(kind: BundleKind): string | null;
  saveBundle(kind: BundleKind, stored: string): void;
  loadFollowPoint(): FollowPoint | null;
  saveFollowPoint(p: FollowPoint): void;
}

export function createBundleCache(dir: string): BundleCache {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const read = (name: string): string | null => {
    try {
      return readFileSync(join(dir, name), 'utf8');
    } catch {
      return null;
    }
  };
  return {
    dir,
    loadBundle: (kind) => read(`${kind}.bundle`),
    saveBundle: (kind, stored) => writeFileAtomic(join(dir, `${kind}.bundle`), stored),
    loadFollowPoint() {
      const t = read('follow.json');
      if (t === null) return null;
      try {
        const o = JSON.parse(t) as Partial<FollowPoint>;
        if (typeof o.clusterId !== 'string' || !Number.isSafeInteger(o.revision) || typeof o.savedAt !== 'string') return null;
        return { clusterId: o.clusterId, revision: o.revision as number, savedAt: o.savedAt };
      } catch {
        return null;
      }
    },
    saveFollowPoint: (p) => writeFileAtomic(join(dir, 'follow.json'), `${JSON.stringify(p)}\n`),
  };
}
