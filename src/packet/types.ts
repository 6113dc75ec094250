// Shared types and constants of the packet layer. Kept apart from the code so that every
// file can import them without cycles.

/** Why a packet could not be parsed, verified or rewritten. Stable strings: used as metric labels. */
export type PacketErrorReason =
  | 'truncated-ip'
  | 'bad-ip-version'
  | 'bad-ip-header-length'
  | 'bad-total-length'
  | 'bad-ip-checksum'
  | 'not-tcp'
  | 'fragment'
  | 'ipv6-extension-header'
  | 'truncated-tcp'
  | 'bad-tcp-offset'
  | 'bad-option-length'
  | 'bad-tcp-checksum'
  | 'too-large'
  | 'no-option-space'
  | 'bad-edit';

/** Every reason, in declaration order (for metrics pre-registration and exhaustive tests). */
export const PACKET_ERROR_REASONS: readonly PacketErrorReason[] = [
  'truncated-ip',
  'bad-ip-version',
  'bad-ip-header-length',
  'bad-total-length',
  'bad-ip-checksum',
  'not-tcp',
  'fragment',
  'ipv6-extension-header',
  'truncated-tcp',
  'bad-tcp-offset',
  'bad-option-length',
  'bad-tcp-checksum',
  'too-large',
  'no-option-space',
  'bad-edit',
];

export interface PacketError {
  ok: false;
  reason: PacketErrorReason;
  detail?: string;
}

/** A parsed IPv4/IPv6 + TCP packet: offsets into the caller's bytes, no copies. */
export interface TcpPacket {
  ok: true;
  family: 4 | 6;
  /** Total packet length from the IP header (trailing bytes in the buffer, e.g. padding, excluded). */
  length: number;
  ipHeaderLength: number;
  tcpOffset: number;
  tcpHeaderLength: number;
  payloadOffset: number;
  payloadLength: number;
  srcAddrOffset: number;
  dstAddrOffset: number;
  addrLength: 4 | 16;
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  /** Byte 13 of the TCP header: CWR ECE URG ACK PSH RST SYN FIN (the AE bit of byte 12 is not included). */
  flags: number;
  window: number;
}

/** Changes applied by rebuild(); every field is optional. */
export interface RebuildEdit {
  /** Offset in buf of an option to remove (as returned by findOption). */
  removeOptionAt?: number;
  /** One complete option (kind, length = its byte length, data) appended after the last option. */
  addOption?: Uint8Array;
  /** Replaces the TCP payload; null removes it. When absent the original payload is kept. */
  payload?: Uint8Array | null;
  /** Keep only this many bytes of the original payload (ignored when payload is given). */
  payloadLength?: number;
  /** Bytes appended after the (kept or replaced) payload. */
  append?: Uint8Array;
  /** Append only the first appendLength bytes of `append` (default: all; no view needed). */
  appendLength?: number;
  /** Largest packet to produce, e.g. the path MTU (default and ceiling: the IP length field's limit). */
  maxLength?: number;
}

export const TCP_FIN = 1;
export const TCP_SYN = 2;
export const TCP_RST = 4;
export const TCP_PSH = 8;
export const TCP_ACK = 16;
export const TCP_URG = 32;
export const TCP_ECE = 64;
export const TCP_CWR = 128;

/** TCP option kinds the handshake cares about. */
export const TCPOPT_EOL = 0;
export const TCPOPT_NOP = 1;
export const TCPOPT_MSS = 2;
export const TCPOPT_WSCALE = 3;
export const TCPOPT_SACK_PERM = 4;
export const TCPOPT_SACK = 5;
export const TCPOPT_TIMESTAMP = 8;
export const TCPOPT_EXP1 = 253;
export const TCPOPT_EXP2 = 254;

/** Error results are plain objects; a helper keeps their shape identical everywhere. */
export function packetError(reason: PacketErrorReason, detail?: string): PacketError {
  return { ok: false, reason, detail };
}
