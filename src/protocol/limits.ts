import fs from "node:fs";
import { z } from "zod";
import { StatetrailError } from "../errors";

/**
 * Guards for documents that come from someone else: protocols fetched by an auditor, state data, execution
 * input. Parsing is cheap for honest documents; these helpers keep it cheap for hostile ones too.
 */

/** Default size limits, here (a module that loads nothing heavy) so the CLI can show them in --help cheaply. */
export const DEFAULT_MAX_MODEL_BYTES = 1024 * 1024;
export const DEFAULT_MAX_STATE_BYTES = 256 * 1024;
export const DEFAULT_MAX_INPUT_BYTES = 256 * 1024;

/** Nesting deeper than this is refused (the ASL loader uses the same limit; no real document comes near it). */
export const MAX_JSON_DEPTH = 1000;

/** A schema check stops after this many problems: the first ones say what is wrong, the rest only cost memory. */
export const MAX_SCHEMA_ISSUES = 20;

/**
 * The deepest nesting of arrays and objects in JSON text, found by one scan that skips string contents. It does
 * not validate the JSON (JSON.parse does); it only measures, without recursion, so any depth is safe to measure.
 */
export function jsonNestingDepth(text: string): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i += 1; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      depth += 1;
      if (depth > deepest) deepest = depth;
    } else if (c === 0x5d || c === 0x7d) depth -= 1;
  }
  return deepest;
}

/** Refuses JSON text nested deeper than `maxDepth` with INPUT_TOO_LARGE, before anything recursive sees it. */
export function assertJsonDepth(text: string, what: string, maxDepth = MAX_JSON_DEPTH): void {
  const depth = jsonNestingDepth(text);
  if (depth > maxDepth) {
    throw new StatetrailError("INPUT_TOO_LARGE", `${what} is nested ${depth} levels deep, the limit is ${maxDepth}`, {
      hint: "flatten the document: arrays and objects may nest at most that deep",
    });
  }
}

/** Decodes UTF-8 strictly: an invalid byte sequence is INVALID_JSON, never silently replaced by U+FFFD. */
export function decodeUtf8(bytes: Uint8Array, what: string): string {
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch (error) {
    throw new StatetrailError("INVALID_JSON", `${what} is not valid UTF-8`, {
      cause: error,
      hint: "JSON must be encoded as UTF-8",
    });
  }
}

export type BoundedParseResult<T> =
  { success: true; data: T } | { success: false; issues: z.ZodIssue[]; truncated: boolean };

class TooManyIssues extends Error {}

/**
 * `schema.safeParse(value)` that gives up after `maxIssues` problems. zod collects every problem of a document
 * before it returns, and a few megabytes of `[{},{},…]` make millions of them (gigabytes, minutes: measured 2.8 GB
 * and 44 s for a 4 MiB state data document). The issue list handed to zod refuses to grow past the limit, which
 * ends the parse at once. Same result as `safeParse` when the document is valid.
 */
export function safeParseBounded<T extends z.ZodTypeAny>(
  schema: T,
  value: unknown,
  maxIssues = MAX_SCHEMA_ISSUES,
): BoundedParseResult<z.output<T>> {
  const issues: z.ZodIssue[] = [];
  let truncated = false;
  issues.push = (...items: z.ZodIssue[]): number => {
    for (const item of items) {
      if (issues.length >= maxIssues) {
        truncated = true;
        throw new TooManyIssues();
      }
      Array.prototype.push.call(issues, item);
    }
    return issues.length;
  };
  const context = {
    common: { issues, async: false },
    path: [],
    parent: null,
    data: value,
    parsedType: z.getParsedType(value),
  };
  let result: ReturnType<T["_parseSync"]>;
  try {
    result = schema._parseSync({ data: value, path: [], parent: context }) as ReturnType<T["_parseSync"]>;
  } catch (error) {
    if (error instanceof TooManyIssues) return { success: false, issues: [...issues], truncated };
    throw error;
  }
  if (result instanceof Promise) throw new Error("safeParseBounded: asynchronous schemas are not supported");
  if (result.status === "valid" && issues.length === 0) return { success: true, data: result.value as z.output<T> };
  return { success: false, issues: [...issues], truncated };
}

/** The problems of a failed {@link safeParseBounded}, one `path: message` per line, noting when there were more. */
export function describeIssues(result: { issues: z.ZodIssue[]; truncated: boolean }): string[] {
  const lines = result.issues.map((issue) => `${issue.path.join(".") || "(root)"}: ${issue.message}`);
  if (result.truncated) lines.push(`(more problems not listed: the check stops after ${result.issues.length})`);
  return lines;
}

/**
 * Reads a file whole, refusing it before reading when it is larger than `maxBytes` (INPUT_TOO_LARGE) or not a
 * regular file (INVALID_ARGUMENT: `/dev/zero`, a FIFO or a directory would never end or never start).
 */
export function readFileLimited(file: string, maxBytes: number, what: string): Buffer {
  let fd: number;
  try {
    fd = fs.openSync(file, "r");
  } catch (error) {
    throw new StatetrailError("INVALID_ARGUMENT", `cannot read ${what} ${file}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) throw new StatetrailError("INVALID_ARGUMENT", `${what} ${file} is not a regular file`);
    const tooLarge = (size: number) =>
      new StatetrailError("INPUT_TOO_LARGE", `${what} ${file} is ${size} bytes, the limit is ${maxBytes}`, {
        hint: "use a smaller document, or raise the limit where the command offers one",
      });
    if (stat.size > maxBytes) throw tooLarge(stat.size);
    const chunks: Buffer[] = [];
    let length = 0;
    for (;;) {
      const chunk = Buffer.alloc(Math.min(maxBytes + 1 - length, 1 << 20));
      const read = fs.readSync(fd, chunk, 0, chunk.length, null);
      if (read === 0) break;
      chunks.push(chunk.subarray(0, read));
      length += read;
      if (length > maxBytes) throw tooLarge(length); // it grew since fstat
    }
    return Buffer.concat(chunks, length);
  } finally {
    fs.closeSync(fd);
  }
}
