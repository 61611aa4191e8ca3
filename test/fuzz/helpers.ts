import fs from "node:fs";
import path from "node:path";
import fc from "fast-check";
import { ERROR_CODES } from "../../src/errors";

/** Shared pieces of the fuzz suite: example files, JSON mutations, and the checks every target must pass. */

export const EXAMPLES = path.resolve(__dirname, "..", "..", "examples");

/**
 * The suite's seed: fixed by default, so that `npm test` (and CI) is reproducible and a failure there is a
 * regression, not a new find on an unlucky draw; STATETRAIL_FUZZ_SEED=<n> replays a seed, STATETRAIL_FUZZ_SEED=random
 * hunts (with STATETRAIL_FUZZ_SCALE for more runs). fast-check prints the seed of any failure.
 */
const seedSetting = process.env.STATETRAIL_FUZZ_SEED ?? "20261204";
if (seedSetting !== "random") fc.configureGlobal({ seed: Number(seedSetting) });

/** The example state machines (bytes), the genuine inputs the mutations start from. */
export function exampleModels(): { name: string; bytes: Buffer }[] {
  return fs
    .readdirSync(EXAMPLES)
    .filter((name) => name.endsWith(".asl.json") && !name.startsWith("bench-"))
    .map((name) => ({ name, bytes: fs.readFileSync(path.join(EXAMPLES, name)) }));
}

/**
 * Number of runs of a property: `base` scaled by STATETRAIL_FUZZ_SCALE (default 1, sized so that the whole fuzz
 * suite runs in well under a minute; e.g. STATETRAIL_FUZZ_SCALE=20 for a long hunt).
 */
export function runs(base: number): number {
  const scale = Number(process.env.STATETRAIL_FUZZ_SCALE ?? 1);
  return Math.max(1, Math.round(base * (Number.isFinite(scale) && scale > 0 ? scale : 1)));
}

/** A suite's time-out: a minute at the default scale, longer for a long hunt. */
export function fuzzTimeout(): number {
  const scale = Number(process.env.STATETRAIL_FUZZ_SCALE ?? 1);
  return 60_000 * (Number.isFinite(scale) && scale > 1 ? scale : 1);
}

/** Whether `error` is a coded StatetrailError (or subclass) with a documented code. */
export function isCoded(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  return error instanceof Error && typeof code === "string" && code in ERROR_CODES;
}

/** Runs `action`; a coded error is an acceptable outcome, anything else thrown is returned as a failure. */
export function codedOrOk<T>(action: () => T): { ok: true; value: T } | { ok: false; code: string } {
  try {
    return { ok: true, value: action() };
  } catch (error) {
    if (isCoded(error)) return { ok: false, code: (error as { code: string }).code };
    throw error;
  }
}

export async function codedOrOkAsync<T>(
  action: () => Promise<T>,
): Promise<{ ok: true; value: T } | { ok: false; code: string }> {
  try {
    return { ok: true, value: await action() };
  } catch (error) {
    if (isCoded(error)) return { ok: false, code: (error as { code: string }).code };
    throw error;
  }
}

/**
 * Collects unhandled promise rejections while a suite runs; `after` asserts there were none. Call inside
 * `describe`.
 */
export function watchUnhandledRejections(): { rejections: unknown[] } {
  const state = { rejections: [] as unknown[] };
  const listener = (reason: unknown): void => void state.rejections.push(reason);
  before(function () {
    process.on("unhandledRejection", listener);
  });
  after(function () {
    process.removeListener("unhandledRejection", listener);
    if (state.rejections.length > 0) {
      const first = state.rejections[0];
      throw new Error(
        `${state.rejections.length} unhandled rejection(s), first: ${first instanceof Error ? (first.stack ?? first.message) : String(first)}`,
      );
    }
  });
  return state;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/**
 * The paths (keys and indexes) of every node of a JSON value, root first (depth-first, in key order). Iterative:
 * mutations wrap values thousands of levels deep, deeper than the call stack.
 */
export function jsonPaths(value: Json, prefix: (string | number)[] = [], out: (string | number)[][] = []) {
  const stack: [Json, (string | number)[]][] = [[value, prefix]];
  while (stack.length > 0) {
    const [node, at] = stack.pop()!;
    out.push(at);
    const children: [Json, (string | number)[]][] = Array.isArray(node)
      ? node.map((item, index) => [item, [...at, index]])
      : node && typeof node === "object"
        ? Object.entries(node).map(([key, item]) => [item, [...at, key]])
        : [];
    for (let i = children.length - 1; i >= 0; i -= 1) stack.push(children[i]);
  }
  return out;
}

export type Mutation =
  | { kind: "replace"; pick: number; value: Json }
  | { kind: "delete"; pick: number }
  | { kind: "insert"; pick: number; key: string; value: Json }
  | { kind: "wrap"; pick: number; depth: number }
  | { kind: "duplicate-array"; pick: number; times: number };

const smallJson: fc.Arbitrary<Json> = fc.oneof(
  fc.constantFrom<Json>(null, true, false, 0, -1, 1e308, 2 ** 53 + 1, 1.5, "", "Task", "x".repeat(300)),
  fc.string({ maxLength: 20 }),
  fc.integer(),
  fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Json>,
  fc.constantFrom<Json>(
    "0".repeat(64),
    "0x" + "ab".repeat(20),
    "0x" + "cd".repeat(32),
    "https://127.0.0.1:1/x",
    "\u0000",
    "\ud800",
    "é",
    "$.a",
    "$$.Execution.Id",
    "arn:aws:states:::lambda:invoke",
  ),
);

export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant("replace" as const), pick: fc.nat(), value: smallJson }),
  fc.record({ kind: fc.constant("delete" as const), pick: fc.nat() }),
  fc.record({
    kind: fc.constant("insert" as const),
    pick: fc.nat(),
    key: fc.oneof(
      fc.string({ maxLength: 12 }),
      fc.constantFrom(
        "Type",
        "Next",
        "End",
        "Default",
        "Choices",
        "Branches",
        "ItemProcessor",
        "Iterator",
        "__proto__",
      ),
    ),
    value: smallJson,
  }),
  fc.record({ kind: fc.constant("wrap" as const), pick: fc.nat(), depth: fc.integer({ min: 1, max: 1200 }) }),
  fc.record({ kind: fc.constant("duplicate-array" as const), pick: fc.nat(), times: fc.integer({ min: 2, max: 8 }) }),
);

/** Applies mutations to a deep copy of `value`. */
export function mutate(value: Json, mutations: Mutation[]): Json {
  let root = structuredClone(value);
  for (const mutation of mutations) {
    const paths = jsonPaths(root);
    const target = paths[mutation.pick % paths.length];
    const parentPath = target.slice(0, -1);
    const last = target[target.length - 1];
    const get = (p: (string | number)[]): Json =>
      p.reduce<Json>((node, key) => (node as Record<string, Json>)[key as string], root);
    const set = (replacement: Json): void => {
      if (target.length === 0) root = replacement;
      else (get(parentPath) as Record<string, Json>)[last as string] = replacement;
    };
    const node = get(target);
    switch (mutation.kind) {
      case "replace":
        set(structuredClone(mutation.value));
        break;
      case "delete":
        if (target.length === 0) break;
        if (Array.isArray(get(parentPath))) (get(parentPath) as Json[]).splice(last as number, 1);
        else delete (get(parentPath) as Record<string, Json>)[last as string];
        break;
      case "insert":
        if (node && typeof node === "object" && !Array.isArray(node)) {
          Object.defineProperty(node, mutation.key, {
            value: structuredClone(mutation.value),
            enumerable: true,
            writable: true,
            configurable: true,
          });
        } else if (Array.isArray(node)) node.push(structuredClone(mutation.value));
        break;
      case "wrap": {
        let wrapped: Json = node;
        for (let i = 0; i < mutation.depth; i++) wrapped = [wrapped];
        set(wrapped);
        break;
      }
      case "duplicate-array":
        if (Array.isArray(node)) set(Array.from({ length: mutation.times }, () => node).flat());
        else set(Array.from({ length: mutation.times }, () => node));
        break;
    }
  }
  return root;
}

export type TextMutation =
  | { kind: "flip"; at: number; byte: number }
  | { kind: "truncate"; at: number }
  | { kind: "insert"; at: number; text: string }
  | { kind: "delete"; at: number; length: number };

export const textMutationArb: fc.Arbitrary<TextMutation> = fc.oneof(
  fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant("insert" as const),
    at: fc.nat(),
    text: fc.oneof(
      fc.string({ maxLength: 8 }),
      fc.constantFrom(",", "}", "]", '"', "\\", "\\u", "\ufeff", "\u2028", "[".repeat(5000), '"a":1,'),
    ),
  }),
  fc.record({ kind: fc.constant("delete" as const), at: fc.nat(), length: fc.integer({ min: 1, max: 40 }) }),
);

/** Applies byte-level mutations (the result may be invalid UTF-8 or invalid JSON on purpose). */
export function mutateBytes(bytes: Buffer, mutations: TextMutation[]): Buffer {
  let out = Buffer.from(bytes);
  for (const mutation of mutations) {
    const at = out.length === 0 ? 0 : mutation.at % (out.length + 1);
    switch (mutation.kind) {
      case "flip":
        if (out.length > 0) out[at % out.length] = mutation.byte;
        break;
      case "truncate":
        out = out.subarray(0, at);
        break;
      case "insert":
        out = Buffer.concat([out.subarray(0, at), Buffer.from(mutation.text, "utf8"), out.subarray(at)]);
        break;
      case "delete":
        out = Buffer.concat([out.subarray(0, at), out.subarray(at + mutation.length)]);
        break;
    }
  }
  return out;
}
