import { createHash } from "node:crypto";
import { open, readFile } from "node:fs/promises";
import { type HexHash, sha256Hex } from "../chain/hash";
import { StatetrailError } from "../errors";
import { type AslDefinition, type LoadedModel, type ValidationStrictness } from "./types";
import { type AslProblem, validateDefinition } from "./validate";

/** Models larger than this are refused unless a larger limit is configured. */
export { DEFAULT_MAX_MODEL_BYTES } from "../protocol/limits";
import { DEFAULT_MAX_MODEL_BYTES } from "../protocol/limits";
import { parseStrictJson } from "../protocol/strict-json";

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

/** The minimal top-level shape every later step relies on; full validation is in validate.ts. */
function asDefinitionShape(json: unknown, source: string): AslDefinition {
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new StatetrailError("ASL_INVALID", `${source}: a state machine definition must be a JSON object`, {
      hint: "give an Amazon States Language definition: a JSON object with StartAt and States",
    });
  }
  return json as AslDefinition;
}
