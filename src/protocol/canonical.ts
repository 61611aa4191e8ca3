import { StatetrailError } from "../errors";
import { decodeUtf8 } from "./limits";
import { parseStrictJson } from "./strict-json";

/**
 * RFC 8785 (JSON Canonicalization Scheme) serialisation. The implementation recurses: a value nested some
 * thousands of levels deep (e.g. an execution input of 100,000 nested arrays, which JSON.parse accepts) overflows
 * the stack, and a value too large for one string can't be serialised either; both are INPUT_TOO_LARGE.
 */
export function canonicalize(value: unknown): string {
  let text: string | undefined;
  try {
    text = canonicalText(value);
  } catch (error) {
    if (error instanceof RangeError) {
      throw new StatetrailError("INPUT_TOO_LARGE", `value is nested too deeply or too large to canonicalize as JSON`, {
        cause: error,
        hint: "keep documents within 1000 levels of nesting and a few megabytes",
      });
    }
    throw error;
  }
  if (text === undefined) throw new StatetrailError("INVALID_JSON", "value cannot be canonicalized as JSON");
  return text;
}

export function canonicalBytes(value: unknown): Buffer {
  return Buffer.from(canonicalize(value), "utf8");
}

/**
 * The text the `canonicalize` package (an RFC 8785 implementation) returns for `value`, written piece by piece
 * and joined in chunks. The package concatenates as it recurses: for a protocol of 100,000 entries that left
 * gigabytes of intermediate strings to the garbage collector (the verifier's V8 peaked at 3.7 GB); this makes
 * the same bytes (tested against the package) with about twice the output's size in memory.
 */
function canonicalText(value: unknown): string | undefined {
  if (value === undefined || typeof value === "function" || typeof value === "symbol") return undefined;
  const chunks: string[] = [];
  let pieces: string[] = [];
  const write = (piece: string): void => {
    pieces.push(piece);
    if (pieces.length >= 8192) {
      chunks.push(pieces.join(""));
      pieces = [];
    }
  };
  writeCanonical(value, write);
  chunks.push(pieces.join(""));
  return chunks.length === 1 ? chunks[0] : chunks.join("");
}

/** Writes the RFC 8785 form of `value` as pieces, following the `canonicalize` package rule by rule. */
export function writeCanonical(value: unknown, write: (piece: string) => void): void {
  if (typeof value === "number" && isNaN(value)) throw new Error("NaN is not allowed");
  if (typeof value === "number" && !isFinite(value)) throw new Error("Infinity is not allowed");
  if (value === null || typeof value !== "object") {
    write(String(JSON.stringify(value))); // as the package's template literals do
    return;
  }
  const object = value as { toJSON?: unknown } & Record<string, unknown>;
  if (object.toJSON instanceof Function) {
    writeCanonical((object.toJSON as () => unknown)(), write);
    return;
  }
  if (Array.isArray(object)) {
    write("[");
    object.forEach((item: unknown, index) => {
      if (index > 0) write(",");
      writeCanonical(item === undefined || typeof item === "symbol" ? null : item, write);
    });
    write("]");
    return;
  }
  write("{");
  let first = true;
  for (const key of Object.keys(object).sort()) {
    const item = object[key];
    if (item === undefined || typeof item === "symbol") continue;
    if (!first) write(",");
    first = false;
    write(JSON.stringify(key));
    write(":");
    writeCanonical(item, write);
  }
  write("}");
}

/**
 * The RFC 8785 text of `value` as one string, built by concatenation: the same text as {@link canonicalize} (rule by
 * rule as {@link writeCanonical}; tested against it), for values of documents within a size limit (a state body),
 * without the pieces and their joins. Throws as writeCanonical does; undefined where canonicalize has no text.
 */
export function canonicalSmall(value: unknown): string | undefined {
  if (value === undefined || typeof value === "function" || typeof value === "symbol") return undefined;
  return canonicalPiece(value);
}

function canonicalPiece(value: unknown): string {
  if (typeof value === "number") {
    if (isNaN(value)) throw new Error("NaN is not allowed");
    if (!isFinite(value)) throw new Error("Infinity is not allowed");
  }
  if (value === null || typeof value !== "object") return String(JSON.stringify(value));
  const object = value as { toJSON?: unknown } & Record<string, unknown>;
  if (object.toJSON instanceof Function) return canonicalPiece((object.toJSON as () => unknown)());
  if (Array.isArray(object)) {
    let text = "[";
    for (let index = 0; index < object.length; index += 1) {
      const item: unknown = object[index];
      if (index > 0) text += ",";
      text += canonicalPiece(item === undefined || typeof item === "symbol" ? null : item);
    }
    return text + "]";
  }
  let text = "{";
  let first = true;
  const keys = Object.keys(object).sort();
  for (let index = 0; index < keys.length; index += 1) {
    const key = keys[index];
    const item = object[key];
    if (item === undefined || typeof item === "symbol") continue;
    if (!first) text += ",";
    first = false;
    text += JSON.stringify(key) + ":" + canonicalPiece(item);
  }
  return text + "}";
}

/** Whether `bytes` are exactly the RFC 8785 canonical bytes of `value` (as `canonicalBytes(value).equals(bytes)`). */
export function isCanonicalBytes(value: unknown, bytes: Buffer): boolean {
  let verdict: boolean | null;
  try {
    verdict = matchCanonical(value, bytes);
  } catch (error) {
    if (error instanceof RangeError) return canonicalBytes(value).equals(bytes); // too deep: canonicalize's error
    throw error;
  }
  if (verdict !== null) return verdict;
  // A value that is not plain JSON data (toJSON, undefined, a symbol, a BigInt): as canonicalSmall writes it.
  let text: string | undefined;
  try {
    text = canonicalSmall(value);
  } catch (error) {
    if (error instanceof RangeError) return canonicalBytes(value).equals(bytes);
    throw error;
  }
  if (text === undefined) return canonicalBytes(value).equals(bytes); // canonicalize's error
  return (
    text.length <= bytes.length &&
    Buffer.byteLength(text, "utf8") === bytes.length &&
    bytes.equals(Buffer.from(text, "utf8"))
  );
}

/**
 * {@link isCanonicalBytes} for plain JSON data (what JSON.parse makes) without writing the text: the value is walked
 * as {@link canonicalPiece} writes it and each piece compared with the UTF-8 bytes in place (the text, its UTF-8
 * copy and every object's sorted keys were made for each state body: a third of the verifier's allocation). Null
 * for a value that is not plain JSON data; throws as canonicalPiece does (NaN, Infinity; RangeError when too deep).
 */
function matchCanonical(value: unknown, bytes: Buffer): boolean | null {
  const matcher = new CanonicalMatcher(bytes);
  const verdict = matcher.value(value);
  return verdict === true ? matcher.offset === bytes.length : verdict;
}

class CanonicalMatcher {
  offset = 0;
  constructor(private readonly bytes: Buffer) {}

  /** True if the bytes at the offset are `value`'s canonical form (the offset then past it), false if not, null if not plain. */
  value(value: unknown): boolean | null {
    if (value === null) return this.ascii("null");
    switch (typeof value) {
      case "boolean":
        return this.ascii(value ? "true" : "false");
      case "number":
        if (isNaN(value)) throw new Error("NaN is not allowed");
        if (!isFinite(value)) throw new Error("Infinity is not allowed");
        return this.ascii(JSON.stringify(value));
      case "string":
        return this.string(value);
      case "object":
        break;
      default:
        return null;
    }
    const object = value as { toJSON?: unknown } & Record<string, unknown>;
    if (object.toJSON !== undefined) return null;
    if (Array.isArray(object)) {
      if (!this.byte(0x5b)) return false;
      for (let index = 0; index < object.length; index += 1) {
        if (index > 0 && !this.byte(0x2c)) return false;
        const item: unknown = object[index];
        if (item === undefined) return null;
        const verdict = this.value(item);
        if (verdict !== true) return verdict;
      }
      return this.byte(0x5d);
    }
    let keys = Object.keys(object);
    for (let index = 1; index < keys.length; index += 1) {
      if (!(keys[index - 1] < keys[index])) {
        keys = keys.slice().sort();
        break;
      }
    }
    if (!this.byte(0x7b)) return false;
    for (let index = 0; index < keys.length; index += 1) {
      const item = object[keys[index]];
      if (item === undefined) return null;
      if (index > 0 && !this.byte(0x2c)) return false;
      if (!this.string(keys[index]) || !this.byte(0x3a)) return false;
      const verdict = this.value(item);
      if (verdict !== true) return verdict;
    }
    return this.byte(0x7d);
  }

  private byte(code: number): boolean {
    if (this.bytes[this.offset] !== code) return false;
    this.offset += 1;
    return true;
  }

  /** `text` (ASCII only) at the offset. */
  private ascii(text: string): boolean {
    const { bytes } = this;
    if (this.offset + text.length > bytes.length) return false;
    for (let index = 0; index < text.length; index += 1) {
      if (bytes[this.offset + index] !== text.charCodeAt(index)) return false;
    }
    this.offset += text.length;
    return true;
  }

  /** `JSON.stringify(text)` as UTF-8 at the offset (escapes as JSON.stringify writes them, lone surrogates too). */
  private string(text: string): boolean {
    const { bytes } = this;
    if (!this.byte(0x22)) return false;
    // Printable ASCII other than `"` and `\` is its own byte (hashes, names, URLs): compared in one tight loop, the
    // rest of the text (from its first other character) as below.
    let index = 0;
    const at = this.offset;
    const length = text.length;
    while (index < length) {
      const code = text.charCodeAt(index);
      if (code < 0x20 || code > 0x7e || code === 0x22 || code === 0x5c || bytes[at + index] !== code) break;
      index += 1;
    }
    this.offset = at + index;
    for (; index < text.length; index += 1) {
      const code = text.charCodeAt(index);
      if (code < 0x80) {
        if (code < 0x20 || code === 0x22 || code === 0x5c) {
          if (!this.ascii(JSON.stringify(text[index]).slice(1, -1))) return false;
        } else if (!this.byte(code)) return false;
        continue;
      }
      let point = code;
      if (code >= 0xd800 && code <= 0xdfff) {
        const next = text.charCodeAt(index + 1);
        if (code <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
          point = 0x10000 + ((code - 0xd800) << 10) + (next - 0xdc00);
          index += 1;
        } else {
          if (!this.ascii(`\\u${code.toString(16)}`)) return false; // a lone surrogate, escaped
          continue;
        }
      }
      const at = this.offset;
      if (point < 0x800) {
        if (bytes[at] !== (0xc0 | (point >> 6)) || bytes[at + 1] !== (0x80 | (point & 0x3f))) return false;
        this.offset += 2;
      } else if (point < 0x10000) {
        if (
          bytes[at] !== (0xe0 | (point >> 12)) ||
          bytes[at + 1] !== (0x80 | ((point >> 6) & 0x3f)) ||
          bytes[at + 2] !== (0x80 | (point & 0x3f))
        ) {
          return false;
        }
        this.offset += 3;
      } else {
        if (
          bytes[at] !== (0xf0 | (point >> 18)) ||
          bytes[at + 1] !== (0x80 | ((point >> 12) & 0x3f)) ||
          bytes[at + 2] !== (0x80 | ((point >> 6) & 0x3f)) ||
          bytes[at + 3] !== (0x80 | (point & 0x3f))
        ) {
          return false;
        }
        this.offset += 4;
      }
    }
    return this.byte(0x22);
  }
}

/**
 * Parses one line and requires it in RFC 8785 form. JSON.parse (native) and then the in-place canonical comparison:
 * bytes that are not the canonical form of what they parse to — a member named twice (JSON.parse keeps the last,
 * other readers the first), whitespace, key order, a number or string spelt otherwise, bytes that are not UTF-8 (the
 * decoder's U+FFFD doesn't encode back to them) — are refused, so one line reads the same to every reader. The strict
 * parser runs only to name the problem of a line JSON.parse refuses. Throws INVALID_JSON (not UTF-8, not JSON: with
 * the position) or PROTOCOL_INVALID (not the canonical form). State documents, the input document and page lines.
 */
export function parseCanonicalLine(line: Buffer, where: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(line.toString("utf8"));
  } catch {
    parseStrictJson(decodeUtf8(line, where), where); // throws the positioned error
    throw new StatetrailError("PROTOCOL_INVALID", `${where} is not JSON`);
  }
  if (!isCanonicalBytes(value, line)) {
    decodeUtf8(line, where); // names bytes that are not UTF-8 as such (the decoder read U+FFFD for them)
    throw new StatetrailError("PROTOCOL_INVALID", `${where} is not in RFC 8785 canonical form`);
  }
  return value;
}
