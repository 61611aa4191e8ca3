import { StatetrailError } from "../errors";

/**
 * Strict JSON (RFC 8259 and I-JSON's one rule that matters here): syntax errors carry line and column, and an object
 * naming a member twice is refused, because JSON.parse keeps the last occurrence and other readers the first. Used
 * for models (an auditor could read another model) and protocols (a decoy before a signed member).
 */

/** Nesting deeper than this is refused (no model or protocol is anywhere near it; it protects the parser). */
const MAX_DEPTH = 1000;
/** Objects of up to this many members have their keys checked for duplicates in a list, larger ones in a Set. */
const SHORT_OBJECT = 16;

/** 1-based line and column (in UTF-16 code units) of `offset` in `text`. */
export function positionOf(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  const end = Math.min(offset, text.length);
  for (let i = 0; i < end; i++) {
    if (text.charCodeAt(i) === 0x0a) {
      line += 1;
      lineStart = i + 1;
    }
  }
  return { line, column: end - lineStart + 1 };
}

/**
 * Parses JSON strictly (RFC 8259): syntax errors carry line and column, and duplicate object keys are
 * refused (JSON.parse keeps the last, other parsers the first: an auditor could read another model).
 */
export function parseStrictJson(text: string, source = "<json>"): unknown {
  new StrictJsonScanner(text, source).scanDocument();
  return JSON.parse(text);
}

class StrictJsonScanner {
  private i = 0;

  constructor(
    private readonly text: string,
    private readonly source: string,
  ) {}

  scanDocument(): void {
    this.ws();
    if (this.i >= this.text.length) this.fail("the document is empty");
    this.value(0);
    this.ws();
    if (this.i < this.text.length) this.fail(`unexpected ${this.describe()} after the JSON value`);
  }

  private fail(message: string, at = this.i): never {
    const { line, column } = positionOf(this.text, at);
    throw new StatetrailError("INVALID_JSON", `${this.source}: ${message} at line ${line}, column ${column}`, {
      hint: "fix the JSON syntax at the position shown",
    });
  }

  private describe(): string {
    if (this.i >= this.text.length) return "end of input";
    return `character ${JSON.stringify(this.text[this.i])}`;
  }

  private ws(): void {
    while (this.i < this.text.length) {
      const c = this.text.charCodeAt(this.i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) this.i += 1;
      else break;
    }
  }

  private value(depth: number): void {
    if (depth > MAX_DEPTH) this.fail(`nesting deeper than ${MAX_DEPTH} levels`);
    const c = this.text[this.i];
    if (c === "{") return this.object(depth);
    if (c === "[") return this.array(depth);
    if (c === '"') {
      this.string(false);
      return;
    }
    if (c === "-" || (c !== undefined && c >= "0" && c <= "9")) return this.number();
    for (const literal of ["true", "false", "null"]) {
      if (this.text.startsWith(literal, this.i)) {
        this.i += literal.length;
        return;
      }
    }
    this.fail(`unexpected ${this.describe()}, expected a JSON value`);
  }

  private object(depth: number): void {
    this.i += 1;
    this.ws();
    // The keys seen: a list while short (a Set per object was most of what scanning a page line allocated).
    let keys: string[] | Set<string> = [];
    if (this.text[this.i] === "}") {
      this.i += 1;
      return;
    }
    for (;;) {
      this.ws();
      if (this.text[this.i] !== '"') this.fail(`unexpected ${this.describe()}, expected a double-quoted property name`);
      const keyAt = this.i;
      const key = this.string(true);
      if (Array.isArray(keys)) {
        if (keys.includes(key)) this.fail(`duplicate key ${JSON.stringify(key)}`, keyAt);
        keys.push(key);
        if (keys.length > SHORT_OBJECT) keys = new Set(keys);
      } else {
        if (keys.has(key)) this.fail(`duplicate key ${JSON.stringify(key)}`, keyAt);
        keys.add(key);
      }
      this.ws();
      if (this.text[this.i] !== ":") this.fail(`unexpected ${this.describe()}, expected ':' after a property name`);
      this.i += 1;
      this.ws();
      this.value(depth + 1);
      if (this.closes("}")) return;
    }
  }

  private array(depth: number): void {
    this.i += 1;
    this.ws();
    if (this.text[this.i] === "]") {
      this.i += 1;
      return;
    }
    for (;;) {
      this.ws();
      this.value(depth + 1);
      if (this.closes("]")) return;
    }
  }

  /** After a member or element: true at `close` (consumed), false at ',' (consumed); anything else fails. */
  private closes(close: "}" | "]"): boolean {
    this.ws();
    const c = this.text[this.i];
    if (c !== "," && c !== close) this.fail(`unexpected ${this.describe()}, expected ',' or '${close}'`);
    this.i += 1;
    return c === close;
  }

  /** Scans a string starting at its opening quote and returns its value (a key's; "" when `wanted` is false). */
  private string(wanted: boolean): string {
    const start = this.i;
    this.i += 1;
    let escaped = false;
    while (this.i < this.text.length) {
      const c = this.text.charCodeAt(this.i);
      if (c === 0x22) {
        this.i += 1;
        if (!wanted) return "";
        return escaped
          ? (JSON.parse(this.text.slice(start, this.i)) as string)
          : this.text.slice(start + 1, this.i - 1);
      }
      if (c < 0x20) this.fail("control character in string (escape it)");
      if (c === 0x5c) {
        escaped = true;
        const e = this.text[this.i + 1];
        if (e === "u") {
          if (!/^[0-9a-fA-F]{4}$/.test(this.text.slice(this.i + 2, this.i + 6))) this.fail("invalid \\u escape");
          this.i += 6;
          continue;
        }
        if (e === undefined || !'"\\/bfnrt'.includes(e)) this.fail("invalid escape sequence in string");
        this.i += 2;
        continue;
      }
      this.i += 1;
    }
    return this.fail("unterminated string", start);
  }

  /**
   * `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?` scanned by hand, not followed by any of `0-9.eE+-`, and at most
   * 400 characters long (numbers were matched within 400 characters; longer ones stay refused).
   */
  private number(): void {
    const text = this.text;
    const start = this.i;
    let i = start;
    if (text.charCodeAt(i) === 0x2d) i += 1;
    const first = text.charCodeAt(i);
    if (first === 0x30) i += 1;
    else if (first >= 0x31 && first <= 0x39) {
      i += 1;
      while (isDigit(text.charCodeAt(i))) i += 1;
    } else this.fail("invalid number", start);
    if (text.charCodeAt(i) === 0x2e && isDigit(text.charCodeAt(i + 1))) {
      i += 2;
      while (isDigit(text.charCodeAt(i))) i += 1;
    }
    const e = text.charCodeAt(i);
    if (e === 0x65 || e === 0x45) {
      let j = i + 1;
      const sign = text.charCodeAt(j);
      if (sign === 0x2b || sign === 0x2d) j += 1;
      if (isDigit(text.charCodeAt(j))) {
        i = j + 1;
        while (isDigit(text.charCodeAt(i))) i += 1;
      }
    }
    if (i - start > 400) this.fail("invalid number", start);
    this.i = i;
    const next = text.charCodeAt(i);
    if (isDigit(next) || next === 0x2e || next === 0x65 || next === 0x45 || next === 0x2b || next === 0x2d) {
      this.fail("invalid number", start);
    }
  }
}

function isDigit(code: number): boolean {
  return code >= 0x30 && code <= 0x39;
}
