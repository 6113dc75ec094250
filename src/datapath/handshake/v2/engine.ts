// Protocol v2's engine: both roles of the four queue passes, pure (node:crypto only).
// docs/protocol.md describes the exchange; types.ts the contract.

import { DEFAULT_V2_OPTIONS, type V2Deps, type V2Engine, type V2Options } from './types.js';

export function createV2Engine(deps: V2Deps): V2Engine {
  const opt: V2Options = { ...DEFAULT_V2_OPTIONS, ...deps.options };
  void opt;
  const todo = (): never => {
    throw new Error('protocol v2 engine: not implemented yet');
  };
  return {
    clientSynOut: todo,
    serverSynIn: todo,
    serverSynAckOut: todo,
    clientSynAckIn: todo,
    setHostKeys: todo,
    clearPeerTokens: todo,
    stats: todo,
  };
}
