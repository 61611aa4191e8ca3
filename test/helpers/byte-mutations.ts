/*
 * Lines altered byte by byte, for the differential tests of the readers that read canonical lines straight from
 * their bytes (test/protocol/entry-line.test.ts, state-line.test.ts): every byte removed, doubled, and replaced by
 * JSON-ish characters and by random bytes.
 */

/** A small seeded PRNG (mulberry32), so a failure can be replayed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ALPHABET = Buffer.from('0123456789abcdefABCDEFxX{}[]",:. \\-+eE\nnul', "latin1");

/** Each variant of `line` with one byte removed, doubled or replaced (three replacements a byte). */
export function* byteMutations(line: Buffer, seed: number): Generator<Buffer> {
  const next = seededRandom(seed);
  for (let at = 0; at < line.length; at += 1) {
    yield Buffer.concat([line.subarray(0, at), line.subarray(at + 1)]);
    yield Buffer.concat([line.subarray(0, at + 1), line.subarray(at)]);
    for (let k = 0; k < 3; k += 1) {
      const altered = Buffer.from(line);
      altered[at] = k === 2 ? Math.floor(next() * 256) : ALPHABET[Math.floor(next() * ALPHABET.length)];
      yield altered;
    }
  }
}
