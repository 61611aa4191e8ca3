import { createHash } from "node:crypto";
import { open, readFile } from "node:fs/promises";
import { type HexHash, sha256Hex } from "../chain/hash";
import { StatetrailError } from "../errors";
import { type AslDefinition, type LoadedModel, type ValidationStrictness } from "./types";
import { type AslProblem, validateDefinition } from "./validate";

/** Models larger than this are refused unless a larger limit is configured. */
export { DEFAULT_MAX_MODEL_BYTES } from "../protocol/limits";
import { DEFAULT_MAX_MODEL_BYTES } from "../protocol/limits";

/** Nesting deeper than this is refused (a definition is nowhere near it; it protects the parser). */
const MAX_DEPTH = 1000;

export interface LoadModelOptions {
  /** Size limit in bytes (default 1 MiB). */
  maxBytes?: number;
  /** Name used in messages (default: the file path, or "<bytes>"). */
  source?: string;
  /** Validate the ASL (default true). With false only JSON syntax and the top-level shape are checked. */
  validate?: boolean;
  /** How strictly (default "local"; "aws" when AWS Step Functions is the authority): see `CheckOptions`. */
  strictness?: ValidationStrictness;
  /** Receives the validation warnings (relaxed paths, placeholders, with "aws" what asl-validator refuses). */
  onWarning?: (warning: AslProblem) => void;
}

/**
 * Loads a model from a file path or from bytes. The bytes are kept exactly as read: they are what is
 * hashed (model_hash = SHA-256 of the bytes), published and sent to AWS.
 *
 * Throws INPUT_TOO_LARGE, INVALID_JSON (not UTF-8, syntax error with line and column, duplicate key),
 * ASL_INVALID (every problem with its path), or INVALID_ARGUMENT when the file can't be read.
 */
export async function loadModel(
  fileOrBytes: string | Uint8Array,
  options: LoadModelOptions = {},
): Promise<LoadedModel> {
  if (typeof fileOrBytes === "string") {
    const bytes = await readModelBytes(fileOrBytes, options.maxBytes);
    return loadModelFromBytes(bytes, { ...options, source: options.source ?? fileOrBytes });
  }
  return loadModelFromBytes(fileOrBytes, options);
}

/** Synchronous core of `loadModel` for bytes already in memory. */
export function loadModelFromBytes(input: Uint8Array, options: LoadModelOptions = {}): LoadedModel {
  const source = options.source ?? "<bytes>";
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_MODEL_BYTES;
  checkSize(input.byteLength, maxBytes, source);
  const bytes = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  const copy = Buffer.from(bytes); // the model owns its bytes: later changes to the caller's buffer don't reach it
  const text = decodeUtf8Strict(copy, source);
  const json = parseStrictJson(text, source);
  const definition = asDefinitionShape(json, source);
  if (options.validate !== false) {
    const warnings = validateDefinition(definition, source, { strictness: options.strictness });
    for (const warning of warnings) options.onWarning?.(warning);
  }
  const model: LoadedModel = { hash: sha256Hex(copy), bytes: copy, definition, source };
  if (options.strictness !== undefined) model.strictness = options.strictness;
  return model;
}

/** What {@link inspectModelFile} found: the hash of any file, and whether it is a model statetrail accepts. */
export interface ModelFileInspection {
  /** SHA-256 (hex) of the file's exact bytes, whatever they are. */
  hash: HexHash;
  /** The file's size in bytes. */
  size: number;
  /** Why the bytes are not an acceptable model (INPUT_TOO_LARGE, INVALID_JSON, ASL_INVALID), or null. */
  problem: { code: string; message: string; hint: string | null } | null;
  /** Validation warnings of an acceptable model (relaxed paths, placeholders…). */
  warnings: AslProblem[];
}

/**
 * Hashes a file's exact bytes (any bytes, any size: read in chunks), then, as a separate matter, checks whether
 * they are a model that `loadModel` would accept with these options. Only an unreadable file throws
 * (INVALID_ARGUMENT): an auditor must be able to hash whatever it was given.
 */
export async function inspectModelFile(
  file: string,
  options: { maxBytes?: number; strictness?: ValidationStrictness } = {},
): Promise<ModelFileInspection> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_MODEL_BYTES;
  let handle;
  try {
    handle = await open(file, "r");
  } catch (error) {
    throw new StatetrailError("INVALID_ARGUMENT", `cannot read ${file}: ${(error as Error).message}`, {
      cause: error,
      hint: "check the path of the file",
    });
  }
  const digest = createHash("sha256");
  let size = 0;
  let kept: Buffer[] | null = [];
  try {
    if (!(await handle.stat()).isFile()) {
      throw new StatetrailError("INVALID_ARGUMENT", `${file} is not a regular file`, {
        hint: "give the path of a file",
      });
    }
    for await (const chunk of handle.createReadStream({ autoClose: false })) {
      const bytes = chunk as Buffer;
      digest.update(bytes);
      size += bytes.length;
      if (kept !== null && size <= maxBytes) kept.push(bytes);
      else kept = null; // larger than a model may be: hash on, keep nothing
    }
  } finally {
    await handle.close();
  }
  const hash = digest.digest("hex") as HexHash;
  if (kept === null) {
    return {
      hash,
      size,
      problem: {
        code: "INPUT_TOO_LARGE",
        message: `${file} is ${size} bytes, more than the model limit of ${maxBytes} bytes`,
        hint: "raise the model size limit if this model is intended",
      },
      warnings: [],
    };
  }
  const warnings: AslProblem[] = [];
  try {
    loadModelFromBytes(Buffer.concat(kept), {
      source: file,
      maxBytes,
      strictness: options.strictness,
      onWarning: (warning) => warnings.push(warning),
    });
  } catch (error) {
    if (!(error instanceof StatetrailError)) throw error;
    return { hash, size, problem: { code: error.code, message: error.message, hint: error.hint ?? null }, warnings };
  }
  return { hash, size, problem: null, warnings };
}

/** SHA-256 (hex) of a file's exact bytes, the model_hash it would get. */
export async function modelHashOfFile(file: string, options: { maxBytes?: number } = {}): Promise<HexHash> {
  return sha256Hex(await readModelBytes(file, options.maxBytes));
}

/** Reads a file whole, refusing it before reading when it exceeds `maxBytes`. */
export async function readModelBytes(file: string, maxBytes = DEFAULT_MAX_MODEL_BYTES): Promise<Buffer> {
  let handle;
  try {
    handle = await open(file, "r");
  } catch (error) {
    throw new StatetrailError("INVALID_ARGUMENT", `cannot read ${file}: ${(error as Error).message}`, {
      cause: error,
      hint: "check the path of the model file",
    });
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile())
      throw new StatetrailError("INVALID_ARGUMENT", `${file} is not a regular file`, {
        hint: "give the path of a model file",
      });
    checkSize(stat.size, maxBytes, file);
    const bytes = await readFile(handle);
    checkSize(bytes.byteLength, maxBytes, file); // the file may have grown between stat and read
    return bytes;
  } finally {
    await handle.close();
  }
}

function checkSize(size: number, maxBytes: number, source: string): void {
  if (size > maxBytes) {
    throw new StatetrailError(
      "INPUT_TOO_LARGE",
      `${source} is ${size} bytes, more than the limit of ${maxBytes} bytes`,
      {
        hint: "raise the model size limit if this model is intended",
      },
    );
  }
}

/** Decodes UTF-8, refusing invalid sequences and a byte order mark (RFC 8259 section 8.1). */
export function decodeUtf8Strict(bytes: Uint8Array, source = "<bytes>"): string {
  if (bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
    throw new StatetrailError("INVALID_JSON", `${source} starts with a UTF-8 byte order mark`, {
      hint: "save the file as UTF-8 without BOM (RFC 8259 forbids adding one)",
    });
  }
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch (error) {
    const offset = firstInvalidUtf8(bytes);
    throw new StatetrailError(
      "INVALID_JSON",
      `${source} is not valid UTF-8 (invalid byte sequence at byte ${offset})`,
      {
        cause: error,
        hint: "JSON must be encoded as UTF-8",
      },
    );
  }
}

/** Offset of the first byte that starts an invalid UTF-8 sequence. */
function firstInvalidUtf8(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i];
    let need = 0;
    let min = 0;
    if (b < 0x80) {
      i += 1;
      continue;
    } else if (b >= 0xc2 && b <= 0xdf) {
      need = 1;
      min = 0x80;
    } else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      min = 0x800;
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      min = 0x10000;
    } else {
      return i;
    }
    if (i + need >= bytes.length) return i; // truncated sequence
    let cp = b & (need === 1 ? 0x1f : need === 2 ? 0x0f : 0x07);
    for (let k = 1; k <= need; k++) {
      const c = bytes[i + k];
      if ((c & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (c & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += need + 1;
  }
  return bytes.length;
}

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
      this.string();
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
    const keys = new Set<string>();
    if (this.text[this.i] === "}") {
      this.i += 1;
      return;
    }
    for (;;) {
      this.ws();
      if (this.text[this.i] !== '"') this.fail(`unexpected ${this.describe()}, expected a double-quoted property name`);
      const keyAt = this.i;
      const key = this.string();
      if (keys.has(key)) this.fail(`duplicate key ${JSON.stringify(key)}`, keyAt);
      keys.add(key);
      this.ws();
      if (this.text[this.i] !== ":") this.fail(`unexpected ${this.describe()}, expected ':' after a property name`);
      this.i += 1;
      this.ws();
      this.value(depth + 1);
      this.ws();
      const c = this.text[this.i];
      if (c === ",") {
        this.i += 1;
        continue;
      }
      if (c === "}") {
        this.i += 1;
        return;
      }
      this.fail(`unexpected ${this.describe()}, expected ',' or '}'`);
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
      this.ws();
      const c = this.text[this.i];
      if (c === ",") {
        this.i += 1;
        continue;
      }
      if (c === "]") {
        this.i += 1;
        return;
      }
      this.fail(`unexpected ${this.describe()}, expected ',' or ']'`);
    }
  }

  /** Scans a string starting at its opening quote and returns its value. */
  private string(): string {
    const start = this.i;
    this.i += 1;
    let escaped = false;
    while (this.i < this.text.length) {
      const c = this.text.charCodeAt(this.i);
      if (c === 0x22) {
        this.i += 1;
        const raw = this.text.slice(start, this.i);
        return escaped ? (JSON.parse(raw) as string) : raw.slice(1, -1);
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

  private number(): void {
    const start = this.i;
    const match = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(this.text.slice(this.i, this.i + 400));
    if (!match) this.fail("invalid number", start);
    this.i += match[0].length;
    const next = this.text[this.i];
    if (next !== undefined && /[0-9.eE+-]/.test(next)) this.fail("invalid number", start);
  }
}

/** The minimal top-level shape every later step relies on; full validation is in validate.ts. */
function asDefinitionShape(json: unknown, source: string): AslDefinition {
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new StatetrailError("ASL_INVALID", `${source}: a state machine definition must be a JSON object`, {
      hint: "give an Amazon States Language definition: a JSON object with StartAt and States",
    });
  }
  return json as AslDefinition;
}
