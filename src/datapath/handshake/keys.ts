// The handshake's per-flow keys and the byte strings it hashes, built into reused scratch
// buffers (the hot path allocates no intermediate arrays).

/** Key and hash-input builders over one handshake's scratch buffers. */
export interface FlowKeys {
  /** remoteAddr ‖ remotePort ‖ words (32-bit, big endian) ‖ extra, as a view of scratch. */
  flowInput(buf: Uint8Array, addrOffset: number, addrLength: number, port: number, words: readonly number[], extra: readonly Uint8Array[]): Uint8Array;
  /** (remote address, remote port, client ISN): the key of the per-flow handshake maps. */
  flowKey(buf: Uint8Array, addrOffset: number, addrLength: number, port: number, isnC: number): string;
  /** (remote address, remote port, local port): the key of the recent-flow sets. */
  tupleKey(buf: Uint8Array, addrOffset: number, addrLength: number, remotePort: number, localPort: number): string;
  /** The address (or the first `addrLength` bytes of it: an IPv6 /64) as a key. */
  sourceKey(buf: Uint8Array, addrOffset: number, addrLength: number): string;
  /** tag ‖ a ‖ b, the input of a handshake MAC, as a view of scratch. */
  macInput(tag: number, a: Uint8Array, b: Uint8Array): Uint8Array;
}

export function createFlowKeys(): FlowKeys {
  const scratch = new Uint8Array(256);

  function flowInput(buf: Uint8Array, addrOffset: number, addrLength: number, port: number, words: readonly number[], extra: readonly Uint8Array[]): Uint8Array {
    let p = 0;
    scratch.set(buf.subarray(addrOffset, addrOffset + addrLength), p);
    p += addrLength;
    scratch[p++] = port >> 8;
    scratch[p++] = port & 0xff;
    for (const w of words) {
      scratch[p++] = w >>> 24;
      scratch[p++] = (w >>> 16) & 0xff;
      scratch[p++] = (w >>> 8) & 0xff;
      scratch[p++] = w & 0xff;
    }
    for (const e of extra) {
      scratch.set(e, p);
      p += e.length;
    }
    return scratch.subarray(0, p);
  }

  // Map keys as one flat string of 16-bit units, built in one call: concatenating a char per
  // byte and a decimal ISN made cons strings that every lookup had to flatten and hash.
  // Address lengths differ per family (2 or 8 units), so keys of IPv4 and IPv6 never collide.
  const units: number[] = [];
  function keyOf(buf: Uint8Array, addrOffset: number, addrLength: number, a: number, b: number, c: number): string {
    units.length = 0;
    for (let i = 0; i < addrLength; i += 2) units.push((buf[addrOffset + i]! << 8) | buf[addrOffset + i + 1]!);
    units.push(a, b, c);
    return String.fromCharCode.apply(null, units);
  }

  return {
    flowInput,
    flowKey: (buf, addrOffset, addrLength, port, isnC) => keyOf(buf, addrOffset, addrLength, port, isnC >>> 16, isnC & 0xffff),
    tupleKey: (buf, addrOffset, addrLength, remotePort, localPort) => keyOf(buf, addrOffset, addrLength, remotePort, localPort, 0),
    sourceKey: (buf, addrOffset, addrLength) => keyOf(buf, addrOffset, addrLength, 0, 0, 0),
    macInput(tag, a, b) {
      scratch[0] = tag >> 8;
      scratch[1] = tag & 0xff;
      scratch.set(a, 2);
      scratch.set(b, 2 + a.length);
      return scratch.subarray(0, 2 + a.length + b.length);
    },
  };
}
