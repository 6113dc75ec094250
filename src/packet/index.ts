// The packet layer: parse, check and rewrite IPv4/IPv6 + TCP packets for the NFQUEUE hot path.
// Pure and allocation-light; malformed input yields a PacketError, never an exception.
// Design, error reasons and checksum strategy: docs/packet.md.

export type { PacketErrorReason, PacketError, TcpPacket, RebuildEdit } from './types.js';
export {
  PACKET_ERROR_REASONS,
  TCP_FIN,
  TCP_SYN,
  TCP_RST,
  TCP_PSH,
  TCP_ACK,
  TCP_URG,
  TCP_ECE,
  TCP_CWR,
  TCPOPT_EOL,
  TCPOPT_NOP,
  TCPOPT_MSS,
  TCPOPT_WSCALE,
  TCPOPT_SACK_PERM,
  TCPOPT_SACK,
  TCPOPT_TIMESTAMP,
  TCPOPT_EXP1,
  TCPOPT_EXP2,
} from './types.js';
export { parseTcp, verifyChecksums, findOption, newTcpPacket } from './parse.js';
export { rebuild, toReset } from './rebuild.js';
export { tcpChecksum, updateChecksum16 } from './checksum.js';
export { flowKey, flowHash, formatFlow, formatAddress } from './flow.js';
