import { isCanonicalBytes } from "../../src/protocol/canonical";
import { parseStrictJson } from "../../src/protocol/strict-json";
import { seededRandom } from "./seeded-random";

/*
 * Lines altered byte by byte, for the differential tests of the readers that read canonical lines straight from
 * their bytes (test/protocol/entry-line.test.ts, state-line.test.ts): every byte removed, doubled, and replaced by
 * JSON-ish characters and by random bytes.
 */

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

/** The JSON of a line read strictly (no member named twice, UTF-8) when the line is its canonical form; else null. */
export function canonicalJsonOf(line: Buffer): unknown {
  let json: unknown;
  try {
    json = parseStrictJson(line.toString("utf8"));
  } catch {
    return null;
  }
  return isCanonicalBytes(json, line) ? json : null;
}
