// The PU registry of one daemon: index and classid allocation, cgroups, tokens and their
// rotation, listening-port discovery, and the snapshots the datapath and the rules are made
// from. Monitors (process API, Docker) call create/remove; nothing here touches packets.

import { createHash, randomBytes } from 'node:crypto';
import { TesseraError } from '../errors.js';
import { MAX_PU_INDEX } from '../marks.js';
import { canonicalLabels, createEphemeralKey, parseUserLabel, type TokenIssuer } from '../identity/index.js';
import { classidFor, type Cgroup2Ref, type NetCls } from '../rules/index.js';
import type { PuSnapshot, Snapshot, SnapshotDelta } from '../datapath/messages.js';
import type { PuInfo } from '../api/index.js';

interface Token {
  bytes: Uint8Array;
  hash: Uint8Array;
  epkPrivate: import('node:crypto').KeyObject;
  exp: number;
}

export interface Pu {
  id: string;
  name: string;
  kind: 'process' | 'container';
  index: number;
  classid: number;
  labels: string[];
  pids: number[];
  /** Listening ports, as the last scan saw them. */
  ports: number[];
  /** The ports whose queue rules are installed (set by the daemon after each rule sync). */
  protectedPorts: number[];
  createdAt: Date;
  tokens: Token[];
  posture: Array<{ flag: string; fix: string }>;
  /** Container PUs: the container's own net_cls cgroup (relative to the mount); its processes. */
  cgroupPath?: string;
  /** Host-network containers: our classid was written into cgroupPath (restored to 0 on removal). */
  adopted: boolean;
  /** Containers with their own network namespace: the whole namespace is this PU. */
  netns?: string;
  /** Where its processes live in the cgroup v2 hierarchy: the kernel finds its sockets from the first SYN (rules/nft.ts). */
  cgroup2?: Cgroup2Ref;
}

export interface PuRegistryOptions {
  netcls: NetCls;
  issuer: TokenIssuer;
  tokenTtlSeconds: number;
  /** Called whenever PUs, ports or tokens change (coalesced by the caller). */
  onChange(): void;
}

export interface CreatePuOptions {
  id?: string;
  name: string;
  kind: 'process' | 'container';
  labels: string[];
  /** System labels added by a monitor (keys start with @); users cannot pass these. */
  systemLabels?: string[];
  index?: number;
  posture?: Array<{ flag: string; fix: string }>;
  /**
   * A container: its own net_cls cgroup, and either adopt it (host network: our classid is
   * written there) or name its network namespace (then no cgroup is touched).
   */
  container?: { cgroupPath?: string; adopt: boolean; netns?: string; cgroup2?: Cgroup2Ref };
}

export class PuRegistry {
  readonly #pus = new Map<string, Pu>();
  /** Indexes and ids handed out by create() calls still awaiting their token and cgroup. */
  readonly #reserved = new Set<number>();
  readonly #creating = new Set<string>();
  readonly #opts: PuRegistryOptions;
  // What changed since the last changes() (the workers' delta): ids added or changed, the
  // indexes of removed PUs, whether any port changed.
  readonly #dirty = new Set<string>();
  readonly #removed = new Set<number>();
  #portsDirty = false;

  constructor(opts: PuRegistryOptions) {
    this.#opts = opts;
  }

  get(id: string): Pu | undefined {
    return this.#pus.get(id);
  }

  all(): Pu[] {
    return [...this.#pus.values()];
  }

  #allocateIndex(wanted?: number): number {
    // Creates run concurrently (a monitor resyncing many containers): a slot is taken until
    // its create() ends, or two PUs would share an index (one nfmark, one classid).
    const used = new Set([...this.#pus.values()].map((p) => p.index).concat([...this.#reserved]));
    if (wanted !== undefined && wanted >= 1 && wanted <= MAX_PU_INDEX && !used.has(wanted)) return wanted;
    for (let i = 1; i <= MAX_PU_INDEX; i++) if (!used.has(i)) return i;
    throw new TesseraError('TESSERA_ERR_PU', `no free PU slot: at most ${MAX_PU_INDEX} PUs per host`);
  }

  async #issue(pu: Pu): Promise<void> {
    const key = createEphemeralKey();
    const now = Math.floor(Date.now() / 1000);
    const text = await this.#opts.issuer.issue({ id: pu.id, labels: pu.labels, epkPublicRaw: key.publicRaw }, now, this.#opts.tokenTtlSeconds);
    const bytes = new Uint8Array(Buffer.from(text, 'latin1'));
    const token: Token = { bytes, hash: new Uint8Array(createHash('sha256').update(bytes).digest()), epkPrivate: key.privateKey, exp: now + this.#opts.tokenTtlSeconds };
    // Newest first; older tokens stay while they are valid so handshakes in flight complete.
    pu.tokens = [token, ...pu.tokens.filter((t) => t.exp > now)].slice(0, 3);
  }

  /** Create a PU and its cgroup; the caller then moves processes in. */
  async create(o: CreatePuOptions): Promise<Pu> {
    const user = o.labels.map((l) => parseUserLabel(l));
    const labels = [...canonicalLabels([...user, ...(o.systemLabels ?? [])])];
    const id = o.id ?? `${o.kind === 'process' ? 'proc' : 'ctr'}-${randomBytes(4).toString('hex')}`;
    if (this.#pus.has(id) || this.#creating.has(id)) throw new TesseraError('TESSERA_ERR_PU', `PU ${id} exists`);
    const index = this.#allocateIndex(o.index);
    this.#reserved.add(index);
    this.#creating.add(id);
    try {
      return await this.#create(o, id, index, labels);
    } finally {
      this.#reserved.delete(index);
      this.#creating.delete(id);
    }
  }

  async #create(o: CreatePuOptions, id: string, index: number, labels: string[]): Promise<Pu> {
    const pu: Pu = {
      id,
      name: o.name,
      kind: o.kind,
      index,
      classid: classidFor(index),
      labels,
      pids: [],
      ports: [],
      protectedPorts: [],
      createdAt: new Date(),
      tokens: [],
      posture: o.posture ?? [],
      adopted: false,
      ...(o.container?.cgroupPath ? { cgroupPath: o.container.cgroupPath } : {}),
      ...(o.container?.netns ? { netns: o.container.netns } : {}),
      ...(o.container?.cgroup2 ? { cgroup2: o.container.cgroup2 } : {}),
    };
    await this.#issue(pu);
    if (!o.container) {
      await this.#opts.netcls.create(id, pu.classid);
      const ref = await this.#opts.netcls.cgroup2Ref(id);
      if (ref) pu.cgroup2 = ref;
    } else if (o.container.adopt) {
      if (!o.container.cgroupPath) throw new TesseraError('TESSERA_ERR_PU', `container ${o.name}: no net_cls cgroup known, cannot tag its sockets`);
      await this.#opts.netcls.adopt(o.container.cgroupPath, pu.classid);
      pu.adopted = true;
    }
    this.#pus.set(id, pu);
    this.#dirty.add(id);
    this.#opts.onChange();
    return pu;
  }

  async remove(id: string): Promise<boolean> {
    const pu = this.#pus.get(id);
    if (!pu) return false;
    this.#pus.delete(id);
    this.#dirty.delete(id);
    this.#removed.add(pu.index);
    if (pu.ports.length > 0 && !pu.netns) this.#portsDirty = true;
    this.#opts.onChange();
    try {
      if (pu.adopted && pu.cgroupPath) await this.#opts.netcls.release(pu.cgroupPath);
      else if (pu.kind === 'process') await this.#opts.netcls.remove(id);
    } catch {
      // Still has processes (a race with a fork): removeAll at exit moves them out.
    }
    return true;
  }

  /**
   * Change a PU's identity in place (a container enrolled before its start, whose inspect
   * then completes its labels). Its tokens are re-issued at once and the old ones dropped:
   * they carry the old labels. Returns whether anything changed.
   */
  async relabel(pu: Pu, o: { name: string; labels: string[]; systemLabels: string[] }): Promise<boolean> {
    const user = o.labels.map((l) => parseUserLabel(l));
    const labels = [...canonicalLabels([...user, ...o.systemLabels])];
    pu.name = o.name;
    if (labels.join('\n') === pu.labels.join('\n')) return false;
    pu.labels = labels;
    await this.#issue(pu);
    this.#dirty.add(pu.id);
    this.#opts.onChange();
    return true;
  }

  /** Re-issue tokens that passed half their lifetime. */
  async rotate(): Promise<number> {
    const now = Date.now() / 1000;
    let n = 0;
    for (const pu of this.#pus.values()) {
      const newest = pu.tokens[0];
      if (!newest || newest.exp - now < this.#opts.tokenTtlSeconds / 2) {
        await this.#issue(pu);
        this.#dirty.add(pu.id);
        n++;
      }
    }
    if (n) this.#opts.onChange();
    return n;
  }

  /** Update pids and listening ports; returns true when ports changed. */
  setObserved(pu: Pu, pids: number[], ports: number[]): boolean {
    pu.pids = pids;
    const changed = ports.length !== pu.ports.length || ports.some((p, i) => p !== pu.ports[i]);
    pu.ports = ports;
    if (changed && !pu.netns) this.#portsDirty = true;
    if (changed) this.#opts.onChange();
    return changed;
  }

  /** Every PU, for the workers at start; what changed until now is then already in it. */
  snapshot(): Snapshot {
    this.changes();
    return { pus: [...this.#pus.values()].map(puSnapshot), ports: this.#ports() };
  }

  /**
   * What changed since the last call (or snapshot()), for the workers: the PUs added or
   * changed, the indexes of those removed, the port map when a port changed. O(changes),
   * except the port map (numbers only), sent only when it changed.
   */
  changes(): SnapshotDelta {
    const set: PuSnapshot[] = [];
    for (const id of this.#dirty) {
      const p = this.#pus.get(id);
      if (p) set.push(puSnapshot(p));
    }
    // An index removed and taken again in one batch: the delta removes it, then sets the new PU.
    const delta: SnapshotDelta = { removed: [...this.#removed], set };
    if (this.#portsDirty) delta.ports = this.#ports();
    this.#dirty.clear();
    this.#removed.clear();
    this.#portsDirty = false;
    return delta;
  }

  #ports(): Array<[number, number]> {
    const ports: Array<[number, number]> = [];
    // A namespace PU's ports are not this host's ports: its queue maps every port to it.
    // The port map is the fallback for SYNs the kernel's socket lookup could not place
    // (the worker ignores it when the lookup found a full socket of another owner).
    for (const p of this.#pus.values()) if (!p.netns) for (const port of p.ports) ports.push([port, p.index]);
    return ports;
  }

  info(pu: Pu): PuInfo {
    return {
      id: pu.id,
      name: pu.name,
      kind: pu.kind,
      index: pu.index,
      classid: '0x' + pu.classid.toString(16),
      labels: pu.labels,
      pids: pu.pids,
      // Only ports the kernel already protects: a client that waits for a port in
      // `tessera status` must not reach it before its queue rule exists.
      ports: pu.protectedPorts,
      createdAt: pu.createdAt.toISOString(),
      posture: pu.posture,
    };
  }
}

function puSnapshot(p: Pu): PuSnapshot {
  return { index: p.index, id: p.id, labels: p.labels, tokens: p.tokens.map((t) => ({ bytes: t.bytes, hash: t.hash, epkPrivate: t.epkPrivate })) };
}
