// The subset of etcd v3's gRPC API (api/etcdserverpb/rpc.proto, api/mvccpb/kv.proto) that
// the fleet uses, as a protobufjs JSON descriptor so nothing has to be copied next to dist/.
// Field numbers are etcd's own; a field we do not list is skipped by the decoder.

const header = { type: 'ResponseHeader', id: 1 };

function msg(fields: Record<string, [string, number] | [string, number, 'repeated']>): { fields: Record<string, { type: string; id: number; rule?: string }> } {
  const out: Record<string, { type: string; id: number; rule?: string }> = {};
  for (const [name, spec] of Object.entries(fields)) {
    out[name] = spec.length === 3 ? { type: spec[0], id: spec[1], rule: spec[2] } : { type: spec[0], id: spec[1] };
  }
  return { fields: out };
}

function method(req: string, res: string, stream = false): Record<string, unknown> {
  return stream ? { requestType: req, responseType: res, requestStream: true, responseStream: true } : { requestType: req, responseType: res };
}

export const ETCD_PROTO = {
  nested: {
    mvccpb: {
      nested: {
        KeyValue: msg({ key: ['bytes', 1], create_revision: ['int64', 2], mod_revision: ['int64', 3], version: ['int64', 4], value: ['bytes', 5], lease: ['int64', 6] }),
        Event: {
          fields: { type: { type: 'EventType', id: 1 }, kv: { type: 'KeyValue', id: 2 }, prev_kv: { type: 'KeyValue', id: 3 } },
          nested: { EventType: { values: { PUT: 0, DELETE: 1 } } },
        },
      },
    },
    etcdserverpb: {
      nested: {
        ResponseHeader: msg({ cluster_id: ['uint64', 1], member_id: ['uint64', 2], revision: ['int64', 3], raft_term: ['uint64', 4] }),
        RangeRequest: msg({ key: ['bytes', 1], range_end: ['bytes', 2], limit: ['int64', 3], revision: ['int64', 4], serializable: ['bool', 7], keys_only: ['bool', 8], count_only: ['bool', 9] }),
        RangeResponse: msg({ header: [header.type, 1], kvs: ['mvccpb.KeyValue', 2, 'repeated'], more: ['bool', 3], count: ['int64', 4] }),
        PutRequest: msg({ key: ['bytes', 1], value: ['bytes', 2], lease: ['int64', 3], prev_kv: ['bool', 4] }),
        PutResponse: msg({ header: [header.type, 1], prev_kv: ['mvccpb.KeyValue', 2] }),
        DeleteRangeRequest: msg({ key: ['bytes', 1], range_end: ['bytes', 2], prev_kv: ['bool', 3] }),
        DeleteRangeResponse: msg({ header: [header.type, 1], deleted: ['int64', 2] }),
        RequestOp: {
          oneofs: { request: { oneof: ['request_range', 'request_put', 'request_delete_range'] } },
          fields: { request_range: { type: 'RangeRequest', id: 1 }, request_put: { type: 'PutRequest', id: 2 }, request_delete_range: { type: 'DeleteRangeRequest', id: 3 } },
        },
        ResponseOp: {
          oneofs: { response: { oneof: ['response_range', 'response_put', 'response_delete_range'] } },
          fields: { response_range: { type: 'RangeResponse', id: 1 }, response_put: { type: 'PutResponse', id: 2 }, response_delete_range: { type: 'DeleteRangeResponse', id: 3 } },
        },
        Compare: {
          oneofs: { target_union: { oneof: ['version', 'create_revision', 'mod_revision', 'value', 'lease'] } },
          fields: {
            result: { type: 'CompareResult', id: 1 },
            target: { type: 'CompareTarget', id: 2 },
            key: { type: 'bytes', id: 3 },
            version: { type: 'int64', id: 4 },
            create_revision: { type: 'int64', id: 5 },
            mod_revision: { type: 'int64', id: 6 },
            value: { type: 'bytes', id: 7 },
            lease: { type: 'int64', id: 8 },
          },
          nested: {
            CompareResult: { values: { EQUAL: 0, GREATER: 1, LESS: 2, NOT_EQUAL: 3 } },
            CompareTarget: { values: { VERSION: 0, CREATE: 1, MOD: 2, VALUE: 3, LEASE: 4 } },
          },
        },
        TxnRequest: msg({ compare: ['Compare', 1, 'repeated'], success: ['RequestOp', 2, 'repeated'], failure: ['RequestOp', 3, 'repeated'] }),
        TxnResponse: msg({ header: [header.type, 1], succeeded: ['bool', 2], responses: ['ResponseOp', 3, 'repeated'] }),
        CompactionRequest: msg({ revision: ['int64', 1], physical: ['bool', 2] }),
        CompactionResponse: msg({ header: [header.type, 1] }),
        WatchRequest: {
          oneofs: { request_union: { oneof: ['create_request', 'cancel_request', 'progress_request'] } },
          fields: { create_request: { type: 'WatchCreateRequest', id: 1 }, cancel_request: { type: 'WatchCancelRequest', id: 2 }, progress_request: { type: 'WatchProgressRequest', id: 3 } },
        },
        WatchCreateRequest: msg({ key: ['bytes', 1], range_end: ['bytes', 2], start_revision: ['int64', 3], progress_notify: ['bool', 4], prev_kv: ['bool', 6], watch_id: ['int64', 7] }),
        WatchCancelRequest: msg({ watch_id: ['int64', 1] }),
        WatchProgressRequest: { fields: {} },
        WatchResponse: msg({
          header: [header.type, 1],
          watch_id: ['int64', 2],
          created: ['bool', 3],
          canceled: ['bool', 4],
          compact_revision: ['int64', 5],
          cancel_reason: ['string', 6],
          fragment: ['bool', 7],
          events: ['mvccpb.Event', 11, 'repeated'],
        }),
        LeaseGrantRequest: msg({ TTL: ['int64', 1], ID: ['int64', 2] }),
        LeaseGrantResponse: msg({ header: [header.type, 1], ID: ['int64', 2], TTL: ['int64', 3], error: ['string', 4] }),
        LeaseRevokeRequest: msg({ ID: ['int64', 1] }),
        LeaseRevokeResponse: msg({ header: [header.type, 1] }),
        LeaseKeepAliveRequest: msg({ ID: ['int64', 1] }),
        LeaseKeepAliveResponse: msg({ header: [header.type, 1], ID: ['int64', 2], TTL: ['int64', 3] }),
        StatusRequest: { fields: {} },
        StatusResponse: msg({ header: [header.type, 1], version: ['string', 2], dbSize: ['int64', 3], leader: ['uint64', 4], raftIndex: ['uint64', 5], raftTerm: ['uint64', 6], errors: ['string', 8, 'repeated'] }),
        KV: {
          methods: {
            Range: method('RangeRequest', 'RangeResponse'),
            Put: method('PutRequest', 'PutResponse'),
            DeleteRange: method('DeleteRangeRequest', 'DeleteRangeResponse'),
            Txn: method('TxnRequest', 'TxnResponse'),
            Compact: method('CompactionRequest', 'CompactionResponse'),
          },
        },
        Watch: { methods: { Watch: method('WatchRequest', 'WatchResponse', true) } },
        Lease: {
          methods: {
            LeaseGrant: method('LeaseGrantRequest', 'LeaseGrantResponse'),
            LeaseRevoke: method('LeaseRevokeRequest', 'LeaseRevokeResponse'),
            LeaseKeepAlive: method('LeaseKeepAliveRequest', 'LeaseKeepAliveResponse', true),
          },
        },
        Maintenance: { methods: { Status: method('StatusRequest', 'StatusResponse') } },
      },
    },
  },
} as const;
