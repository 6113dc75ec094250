// Protocol v2 (docs/protocol.md): the pure engine the datapath wires into its four queue
// passes, its wire format and its contract.

export { createV2Engine } from './engine.js';
export { fillTuple, newTuple } from './proof.js';
export { createRegisterBuffer, releaseHeldBy } from './register.js';
export * from './types.js';
export {
  decodeBlock2,
  encodeSyn,
  encodeSynAck,
  encodeRetry,
  synLength,
  synAckLength,
  retryLength,
  WIRE_VERSION_2,
  V2Type,
  FLAG_TOKEN_REF,
  FLAG_NEED_KEY,
  RETRY_NEED_TOKEN,
  RETRY_HAS_TOKEN,
  type Block2,
  type Decoded2,
  type Wire2Error,
} from './wire.js';
