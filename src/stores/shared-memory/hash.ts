/**
 * HalfSipHash-1-3 (Aumasson & Bernstein; the Linux kernel's `hsiphash`), keyed with 64 random
 * bits chosen when the map is created. Keys come from outside (account ids in requests), so a
 * fixed or guessable hash would let a client pile keys into one bucket chain and turn every
 * lookup of that bucket into a linear scan (hash flooding). SipHash's key makes collisions
 * unpredictable; a seeded multiply-xorshift hash is faster but has seed-independent
 * multicollisions, so the seed would not help.
 *
 * Input: the key's UTF-16 code units packed two per 32-bit word (low half first), the last word
 * zero-padded, then a final block with the key length, as HalfSipHash's length byte does.
 * Packing is the same as the stored key's, so a lookup compares words it has already computed.
 *
 * 32-bit arithmetic throughout (`| 0`, `>>>`), which V8 compiles to plain integer instructions.
 */
export function hashKey(key: string, k0: number, k1: number): number {
  return hashKeyInto(key, k0, k1, null);
}

/**
 * `hashKey`, also writing the key's packed words into `words` (which must hold
 * ceil(key.length / 2)): a lookup then compares stored words against them, not the string.
 */
export function hashKeyInto(key: string, k0: number, k1: number, words: Int32Array | null): number {
  let v0 = k0 | 0;
  let v1 = k1 | 0;
  let v2 = (0x6c796765 ^ k0) | 0;
  let v3 = (0x74656462 ^ k1) | 0;
  const length = key.length;
  let i = 0;
  for (; i < length; i += 2) {
    const m = i + 1 < length ? key.charCodeAt(i) | (key.charCodeAt(i + 1) << 16) : key.charCodeAt(i);
    if (words !== null) words[i >> 1] = m;
    v3 ^= m;
    // one SipRound (compression rounds: 1)
    v0 = (v0 + v1) | 0;
    v1 = (v1 << 5) | (v1 >>> 27);
    v1 ^= v0;
    v0 = (v0 << 16) | (v0 >>> 16);
    v2 = (v2 + v3) | 0;
    v3 = (v3 << 8) | (v3 >>> 24);
    v3 ^= v2;
    v0 = (v0 + v3) | 0;
    v3 = (v3 << 7) | (v3 >>> 25);
    v3 ^= v0;
    v2 = (v2 + v1) | 0;
    v1 = (v1 << 13) | (v1 >>> 19);
    v1 ^= v2;
    v2 = (v2 << 16) | (v2 >>> 16);
    v0 ^= m;
  }
  // Final block: HalfSipHash puts the length's low byte in the top byte; the rest of the length
  // fills the low 24 bits (where the standard puts tail bytes: ours are in the padded last word).
  const b = (length << 24) | (length >>> 8);
  v3 ^= b;
  v0 = (v0 + v1) | 0;
  v1 = (v1 << 5) | (v1 >>> 27);
  v1 ^= v0;
  v0 = (v0 << 16) | (v0 >>> 16);
  v2 = (v2 + v3) | 0;
  v3 = (v3 << 8) | (v3 >>> 24);
  v3 ^= v2;
  v0 = (v0 + v3) | 0;
  v3 = (v3 << 7) | (v3 >>> 25);
  v3 ^= v0;
  v2 = (v2 + v1) | 0;
  v1 = (v1 << 13) | (v1 >>> 19);
  v1 ^= v2;
  v2 = (v2 << 16) | (v2 >>> 16);
  v0 ^= b;
  v2 ^= 0xff;
  // finalization rounds: 3
  for (let round = 0; round < 3; round++) {
    v0 = (v0 + v1) | 0;
    v1 = (v1 << 5) | (v1 >>> 27);
    v1 ^= v0;
    v0 = (v0 << 16) | (v0 >>> 16);
    v2 = (v2 + v3) | 0;
    v3 = (v3 << 8) | (v3 >>> 24);
    v3 ^= v2;
    v0 = (v0 + v3) | 0;
    v3 = (v3 << 7) | (v3 >>> 25);
    v3 ^= v0;
    v2 = (v2 + v1) | 0;
    v1 = (v1 << 13) | (v1 >>> 19);
    v1 ^= v2;
    v2 = (v2 << 16) | (v2 >>> 16);
  }
  return v1 ^ v3;
}

/** The key's word `w` as stored: code units 2w (low half) and 2w+1 (high half, 0 past the end). */
export function keyWord(key: string, w: number): number {
  const i = w << 1;
  return i + 1 < key.length ? key.charCodeAt(i) | (key.charCodeAt(i + 1) << 16) : key.charCodeAt(i);
}
