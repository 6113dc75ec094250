// The datapath: queue workers (I/O) around the pure handshake state machine.
export { createDatapath, type Datapath, type DatapathOptions } from './pool.js';
export type { FlowRecord, Reason, HandshakeOptions } from './handshake/handshake.js';
export type { Snapshot, SnapshotDelta, PuSnapshot, TrustConfig, WorkerStats, NamespaceQueue } from './messages.js';
export { HANDLING_BUCKETS_US } from './messages.js';
export { nftGenerationReader } from './native.js';
