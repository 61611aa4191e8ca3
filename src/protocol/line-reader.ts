import { isUtf8 } from "node:buffer";

/*
 * Reading canonical JSON lines of a fixed shape straight from their bytes (entry-line.ts, state-line.ts): a cursor
 * that matches literal bytes, whole numbers, hex digits and plain strings, and declines (returns null or -1) on
 * anything else, so that the general reader (a JSON parser, the canonical comparison, the schema) decides.
 */

/**
 * Byte classes: lowercase hex, any-case hex, and the bytes a canonical JSON string holds unescaped (what
 * JSON.stringify leaves as it is: U+0020 to U+007F but `"` and `\`, and every byte of a non-ASCII character's UTF-8).
 */
export const LOWER_HEX = new Uint8Array(256);
export const ANY_HEX = new Uint8Array(256);
const PLAIN = new Uint8Array(256);
for (let code = 0; code < 256; code += 1) {
  const lower = (code >= 0x30 && code <= 0x39) || (code >= 0x61 && code <= 0x66);
  LOWER_HEX[code] = lower ? 1 : 0;
  ANY_HEX[code] = lower || (code >= 0x41 && code <= 0x46) ? 1 : 0;
  PLAIN[code] = code >= 0x20 && code !== 0x22 && code !== 0x5c ? 1 : 0;
}

/** The bytes of an ASCII text. */
export const ascii = (text: string): Uint8Array => Uint8Array.from(text, (char) => char.charCodeAt(0));

/** Whole numbers of up to 15 digits are read here (exact as doubles); longer ones go the general way. */
const MAX_DIGITS = 15;

export class Cursor {
  at = 0;
  constructor(readonly bytes: Uint8Array) {}

  literal(expected: Uint8Array): boolean {
    const { bytes } = this;
    if (this.at + expected.length > bytes.length) return false;
    for (let index = 0; index < expected.length; index += 1) {
      if (bytes[this.at + index] !== expected[index]) return false;
    }
    this.at += expected.length;
    return true;
  }

  /** A canonical whole number (no sign, no leading zero, no fraction or exponent), or -1. */
  count(): number {
    const { bytes } = this;
    const start = this.at;
    let value = 0;
    while (this.at < bytes.length && bytes[this.at] >= 0x30 && bytes[this.at] <= 0x39) {
      value = value * 10 + (bytes[this.at] - 0x30);
      this.at += 1;
    }
    const digits = this.at - start;
    if (digits === 0 || digits > MAX_DIGITS || (digits > 1 && bytes[start] === 0x30)) return -1;
    return value;
  }

  /** `length` hex digits of the class `table`, as text; null otherwise. */
  hex(length: number, table: Uint8Array): string | null {
    const start = this.at;
    return this.hexDigits(length, table) === null ? null : latin1(this.bytes, start, this.at);
  }

  /** Past `length` hex digits of the class `table` (true), or null where they are not. */
  private hexDigits(length: number, table: Uint8Array): true | null {
    const { bytes } = this;
    const start = this.at;
    if (start + length > bytes.length) return null;
    for (let index = start; index < start + length; index += 1) if (table[bytes[index]] === 0) return null;
    this.at += length;
    return true;
  }

  /**
   * `0x` and `length` hex digits of the class `table`, as one text (sliced whole from the bytes: a flat string, not
   * "0x" joined to the digits, which V8 would flatten again on every read); null otherwise.
   */
  prefixedHex(length: number, table: Uint8Array): string | null {
    const { bytes } = this;
    const start = this.at;
    if (bytes[start] !== 0x30 || bytes[start + 1] !== 0x78) return null;
    this.at += 2;
    if (this.hexDigits(length, table) === null) return null;
    return latin1(bytes, start, this.at);
  }

  /**
   * A string's content up to its closing quote (not consumed), if it holds no escape and no control character (as
   * JSON.stringify writes such a string, byte for byte) and is UTF-8; else null.
   */
  plain(): string | null {
    const { bytes } = this;
    const start = this.at;
    let wide = false;
    for (; this.at < bytes.length; this.at += 1) {
      const byte = bytes[this.at];
      if (PLAIN[byte] === 0) break;
      if (byte >= 0x80) wide = true;
    }
    if (bytes[this.at] !== 0x22) return null;
    if (!wide) return latin1(bytes, start, this.at);
    // Non-ASCII: the bytes must be UTF-8 (a decoder would make U+FFFD of others, another text than the bytes).
    if (!isUtf8(bytes.subarray(start, this.at))) return null;
    return Buffer.prototype.utf8Slice.call(bytes, start, this.at) as string;
  }
}

function latin1(bytes: Uint8Array, start: number, end: number): string {
  return Buffer.prototype.latin1Slice.call(bytes, start, end) as string;
}
