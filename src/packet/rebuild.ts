// rebuild and toReset: write a modified copy of a parsed packet into a caller-provided buffer.
// Both fix every length field and recompute the IPv4 header and TCP checksums in full.
//
// Why full recomputation and not RFC 1624 incremental updates: the bytes we add (the token)
// or remove must be summed anyway, so incremental updates would save only the sum over the
// kept bytes (a few hundred ns at most) for much more code. The cost: a packet that arrived
// with a wrong checksum leaves with a right one, so callers verify ingress packets first
// (verifyChecksums) — see docs/packet.md.

import { fold, pseudoHeaderSum, sumWords } from './checksum.js';
import { packetError, type PacketError, type RebuildEdit, type TcpPacket } from './types.js';

// Below this many bytes a plain loop beats out.set(buf.subarray(...)), which allocates a view.
const LOOP_COPY_MAX = 128;

function copy(src: Uint8Array, from: number, to: number, dst: Uint8Array, at: number): void {
  const n = to - from;
  if (n <= 0) return;
  if (n <= LOOP_COPY_MAX) {
    for (let i = 0; i < n; i++) dst[at + i] = src[from + i]!;
  } else if (from === 0 && to === src.length) {
    dst.set(src, at); // a whole token or payload: no subarray view to allocate
  } else {
    dst.set(src.subarray(from, to), at);
  }
}

/** Reject a `pkt` that does not describe `buf` (stale or hand-made), so indexing stays in bounds. */
function checkView(buf: Uint8Array, pkt: TcpPacket): PacketError | null {
  const t = pkt.tcpOffset;
  if (
    !(pkt.length <= buf.length) ||
    !(t >= 20 && t === pkt.ipHeaderLength) ||
    !(pkt.tcpHeaderLength >= 20 && pkt.tcpHeaderLength <= 60 && (pkt.tcpHeaderLength & 3) === 0) ||
    !(pkt.srcAddrOffset + pkt.addrLength <= t && pkt.dstAddrOffset + pkt.addrLength <= t) ||
    !(t + pkt.tcpHeaderLength === pkt.payloadOffset) ||
    !(pkt.payloadOffset + pkt.payloadLength === pkt.length)
  ) {
    return packetError('bad-edit', 'packet view does not match the buffer; parse it again');
  }
  return null;
}

/** Fix the IP length field and (IPv4) the header checksum of the packet in out[0..length). */
function finishIp(out: Uint8Array, pkt: TcpPacket, length: number): void {
  if (pkt.family === 4) {
    out[2] = length >> 8;
    out[3] = length & 0xff;
    out[10] = 0;
    out[11] = 0;
    const c = ~fold(sumWords(out, 0, pkt.ipHeaderLength)) & 0xffff;
    out[10] = c >> 8;
    out[11] = c & 0xff;
  } else {
    const pl = length - 40;
    out[4] = pl >> 8;
    out[5] = pl & 0xff;
  }
}

/** Recompute the TCP checksum of the segment out[pkt.tcpOffset..length). */
function finishTcp(out: Uint8Array, pkt: TcpPacket, length: number): void {
  const t = pkt.tcpOffset;
  out[t + 16] = 0;
  out[t + 17] = 0;
  // The pseudo-header reads the addresses from out: they were copied unchanged.
  const c = ~fold(pseudoHeaderSum(out, pkt, length - t) + sumWords(out, t, length)) & 0xffff;
  out[t + 16] = c >> 8;
  out[t + 17] = c & 0xff;
}

/**
 * Write into `out` (which must not share memory with `buf`; only out === buf is detected) a copy of the packet with `edit` applied:
 * same IP header (options kept; lengths and IPv4 checksum fixed), TCP options with one option
 * removed and/or one appended (4-byte alignment kept: NOPs before an added option, NOPs
 * before a removed one dropped, or EOL padding at the end), then the payload. Returns the new
 * length, or an error before anything is written.
 */
export function rebuild(buf: Uint8Array, pkt: TcpPacket, edit: RebuildEdit, out: Uint8Array): number | PacketError {
  const viewError = checkView(buf, pkt);
  if (viewError) return viewError;
  // Only the identity is checked: comparing .buffer costs ~15 ns per access (a third of a
  // no-op rebuild), and two different views over one buffer are not what callers do.
  if (out === buf) return packetError('bad-edit', 'out must not be buf (rebuild cannot work in place)');
  const t = pkt.tcpOffset;
  const optStart = t + 20;
  const optEnd = t + pkt.tcpHeaderLength;

  // One walk over the options: find the EOL (end of the used area) and the option to remove.
  const at = edit.removeOptionAt;
  let eol = optEnd;
  let removeLength = 0;
  let nopsBefore = 0;
  let nopRun = 0;
  for (let i = optStart; i < optEnd; ) {
    const k = buf[i]!;
    if (k === 0) {
      eol = i;
      break;
    }
    let l = 1;
    if (k !== 1) {
      if (i + 1 >= optEnd) return packetError('bad-option-length', `option kind ${k} at offset ${i}`);
      l = buf[i + 1]!;
      if (l < 2 || i + l > optEnd) return packetError('bad-option-length', `option kind ${k} at offset ${i}`);
    }
    if (i === at) {
      removeLength = l;
      nopsBefore = nopRun;
    }
    nopRun = k === 1 ? nopRun + 1 : 0;
    i += l;
  }
  let removeFrom = optEnd;
  let removeTo = optEnd;
  let eolPad = 0;
  if (at !== undefined) {
    if (removeLength === 0) return packetError('bad-edit', `removeOptionAt ${at} is not the start of an option`);
    // Keep the options after it 4-byte aligned: drop as many NOPs before it as make the removed
    // span a multiple of 4 (exactly the NOPs an earlier addOption inserted), else pad with EOL.
    const need = (4 - (removeLength & 3)) & 3;
    removeTo = at + removeLength;
    if (nopsBefore >= need) {
      removeFrom = at - need;
    } else {
      removeFrom = at;
      eolPad = removeLength & 3;
    }
  }
  const removed = removeTo - removeFrom;
  // Used option bytes after the removal: everything up to the EOL (the removed option precedes it).
  const used = eol - optStart - removed;
  let areaLength = optEnd - optStart - removed + eolPad;

  const add = edit.addOption;
  let addLength = 0;
  let nopPad = 0;
  if (add !== undefined) {
    addLength = add.length;
    if (addLength < 2 || add[1] !== addLength || add[0]! < 2) {
      return packetError('bad-edit', 'addOption must be one option whose length byte equals its size');
    }
    nopPad = (4 - (addLength & 3)) & 3;
    areaLength += nopPad + addLength;
    if (areaLength > 40) return packetError('no-option-space', `${areaLength} option bytes > 40`);
  }

  // Payload: replaced, or the original one (optionally truncated), then the appended bytes.
  let paySrc: Uint8Array = buf;
  let payFrom = pkt.payloadOffset;
  let payLength = pkt.payloadLength;
  if (edit.payload !== undefined) {
    if (edit.payload === null) {
      payLength = 0;
    } else {
      paySrc = edit.payload;
      payFrom = 0;
      payLength = edit.payload.length;
      if (edit.payload === out) return packetError('bad-edit', 'payload must not be out');
    }
  } else if (edit.payloadLength !== undefined) {
    const pl = edit.payloadLength;
    if (!(Number.isInteger(pl) && pl >= 0 && pl <= pkt.payloadLength)) {
      return packetError('bad-edit', `payloadLength ${pl} outside 0..${pkt.payloadLength}`);
    }
    payLength = pl;
  }
  const append = edit.append;
  let appendLength = append === undefined ? 0 : append.length;
  if (append !== undefined && edit.appendLength !== undefined) {
    const al = edit.appendLength;
    if (!(Number.isInteger(al) && al >= 0 && al <= append.length)) return packetError('bad-edit', `appendLength ${al} outside 0..${append.length}`);
    appendLength = al;
  }
  if (append === out) return packetError('bad-edit', 'append must not be out');

  const limit = pkt.family === 4 ? 65535 : 65535 + 40;
  let max = out.length < limit ? out.length : limit;
  const wanted = edit.maxLength;
  // Written so that NaN or a negative maxLength refuses everything instead of disabling the check.
  if (wanted !== undefined && !(wanted >= max)) max = wanted >= 0 ? wanted : 0;
  const tcpHeaderLength = 20 + areaLength;
  const length = t + tcpHeaderLength + payLength + appendLength;
  if (length > max) return packetError('too-large', `${length} bytes > ${max}`);

  // Everything is validated: write.
  copy(buf, 0, optStart, out, 0);
  let w = optStart;
  copy(buf, optStart, removeFrom, out, w);
  w += removeFrom - optStart;
  copy(buf, removeTo, optEnd, out, w);
  w += optEnd - removeTo;
  for (let i = 0; i < eolPad; i++) out[w++] = 0;
  if (add !== undefined) {
    // Insert NOPs + option at the end of the used options, before any EOL padding.
    const ins = optStart + used;
    const shift = nopPad + addLength;
    if (w > ins) out.copyWithin(ins + shift, ins, w); // EOL padding to move right (rare)
    for (let i = 0; i < nopPad; i++) out[ins + i] = 1;
    copy(add, 0, addLength, out, ins + nopPad);
    w += shift;
  }
  copy(paySrc, payFrom, payFrom + payLength, out, w);
  w += payLength;
  if (append !== undefined) copy(append, 0, appendLength, out, w);

  out[t + 12] = ((tcpHeaderLength >> 2) << 4) | (out[t + 12]! & 0x0f);
  finishIp(out, pkt, length);
  finishTcp(out, pkt, length);
  return length;
}

/**
 * Turn the segment into an RST|ACK in `out` (which may be `buf` itself, or else must not
 * share memory with it): same addresses, ports, seq and ack; no options, no payload, window 0, ECN bits
 * cleared, checksums fixed. Delivered to the local client in place of a refused SYN-ACK, it
 * makes connect() fail with ECONNREFUSED at once. Returns the new length.
 */
export function toReset(buf: Uint8Array, pkt: TcpPacket, out: Uint8Array): number | PacketError {
  const viewError = checkView(buf, pkt);
  if (viewError) return viewError;
  const t = pkt.tcpOffset;
  const length = t + 20;
  if (out.length < length) return packetError('too-large', `${length} bytes > ${out.length}`);
  if (out !== buf) copy(buf, 0, length, out, 0);
  if (pkt.family === 4) out[1] = out[1]! & 0xfc;
  else out[1] = out[1]! & 0xcf;
  out[t + 12] = 0x50;
  out[t + 13] = 0x14; // RST|ACK
  out[t + 14] = 0;
  out[t + 15] = 0;
  out[t + 18] = 0;
  out[t + 19] = 0;
  finishIp(out, pkt, length);
  finishTcp(out, pkt, length);
  return length;
}
