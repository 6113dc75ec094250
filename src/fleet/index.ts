// The fleet: policy and trust distributed through etcd, signed end to end by the operator
// key, followed by every daemon, kept on disk for when etcd is away. docs/cluster.md.

export { createLayout, DEFAULT_PREFIX, BUNDLE_KINDS, MAX_FLOW_SLOTS, type BundleKind, type Layout } from './layout.js';
export { signBundle, verifyBundle, canonicalJson, nextRevision, type Bundle, type PolicyPayload, type TrustPayload, type RefusalReason } from './bundle.js';
export { createOperatorKey, operatorKeyToJson, operatorPublicToJson, parseOperatorKey, parseOperatorPublic, type OperatorKey, type OperatorPublicKey } from './operator-key.js';
export { readOperatorKeyFile, readOperatorPublicFile, writeFileAtomic } from './files.js';
export { createBundleCache, type BundleCache } from './cache.js';
export { EtcdClient, type EtcdTls } from './etcd.js';
export { parseClusterUrl, type ClusterUrl, type Endpoint } from './url.js';
export { Follower, type AppliedBundle, type Refusal, type FollowerStatus, type FollowerOptions } from './follower.js';
export { StatusPublisher, readHostStatuses, type HostStatus } from './status.js';
export { pushBundle, type PushResult } from './push.js';
export { checkHostEntry, publishHostEntry, readHostEntries, type HostEntry } from './hosts.js';
