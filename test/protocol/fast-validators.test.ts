import { expect } from "chai";
import { safeParseBounded } from "../../src/protocol/limits";
import {
  fastProtocolEntry,
  fastStateData,
  protocolEntrySchema,
  stateDataSchema,
  type ProtocolEntry,
  type StateData,
} from "../../src/protocol/schema";
import { sha256Hex } from "../../src/chain/hash";
import { parseStrictJson } from "../../src/protocol/strict-json";
import { canonicalBytes, canonicalSmall, canonicalize, isCanonicalBytes } from "../../src/protocol/canonical";
import { seededRandom } from "../helpers/seeded-random";

/*
 * The verifier checks page lines and state bodies with hand-written validators (schema.ts fastProtocolEntry,
 * fastStateData) instead of zod. A validator that accepts what the schema refuses would let a malformed entry or
 * state pass as valid: here both see the same documents (valid ones, and random mutations of them: members
 * removed, added, renamed, retyped, nested values broken) and must accept and refuse the same, and when they
 * accept, return the same value (members, their order, nothing extra).
 */

const STRICT_ENTRY = protocolEntrySchema.strict();
const hash = (label: string): string => sha256Hex(label);

function entry(anchored: boolean): ProtocolEntry {
  return {
    event_type: "Register State",
    seq: 7,
    state_name: "Score",
    state_type: "Task",
    state_hash: hash("s"),
    prev_state_hash: hash("p"),
    timestamp: 1796358599,
    block_nr: 27,
    client_address: "0xF8748B2D75DdB083F24bd550f27c1264492f88cc",
    transaction_hash: "0x" + hash("tx"),
    state_data: `https://localhost:1/states/${hash("s")}`,
    proof: anchored
      ? { root: "0x" + hash("root"), leaf_index: 3, siblings: ["0x" + hash("a"), "0x" + hash("b")] }
      : null,
  };
}

function stateData(variant: number): StateData {
  return {
    statetrail_state: 3,
    instance_hash: hash("i"),
    seq: 7,
    state_name: "Score",
    state_type: variant % 2 ? "Map" : "Task",
    iteration_path: variant % 3 ? [{ parent: "Loop", kind: "map", index: 2 }] : [],
    attempt: 0,
    fields: {
      caught: hash(`caught${variant}`),
      context: hash("context"),
      input: hash("input"),
      outcome: variant % 5 === 0 ? hash("o") : hash(`outcome${variant}`),
    },
  };
}

/** Values a member may be replaced by: every JSON type, the edges of each check and some non-JSON ones. */
const ODD: unknown[] = [
  null,
  undefined,
  true,
  false,
  0,
  -0,
  -1,
  1.5,
  2 ** 53,
  1e300,
  Infinity,
  -Infinity,
  NaN,
  "",
  "x",
  "Register State",
  "register state",
  "Task",
  "task",
  "map",
  "parallel",
  "ExecutionSucceeded",
  hash("z"),
  hash("z").toUpperCase(),
  hash("z").slice(1),
  "0x" + hash("z"),
  "0x" + hash("z").toUpperCase(),
  "0x" + hash("z").slice(24),
  "0X" + hash("z").slice(24),
  "0xF8748B2D75DdB083F24bd550f27c1264492f88cc",
  " " + hash("z"),
  hash("z") + "\n",
  [],
  [1],
  ["0x" + hash("z")],
  [{ parent: "p", kind: "map", index: 0 }],
  [{ parent: "p", kind: "loop", index: 0 }],
  {},
  { error: "E" },
  { error: "E", cause: 1 },
  { error: 1 },
  { result: 1 },
  { result: 1, error: { error: "E" } },
  { result: 1, other: 2 },
  { root: "0x" + hash("r"), leaf_index: 0, siblings: [] },
  { root: "0x" + hash("r"), leaf_index: -1, siblings: [] },
  { root: "0x" + hash("r"), leaf_index: 0, siblings: [], extra: 1 },
  { a: 1 },
];
const KEYS = [
  "event_type",
  "seq",
  "state_name",
  "state_type",
  "state_hash",
  "prev_state_hash",
  "timestamp",
  "block_nr",
  "client_address",
  "transaction_hash",
  "state_data",
  "proof",
  "statetrail_state",
  "instance_hash",
  "salt",
  "iteration_path",
  "attempt",
  "input",
  "caught",
  "outcome",
  "context",
  "root",
  "leaf_index",
  "siblings",
  "parent",
  "kind",
  "index",
  "error",
  "cause",
  "result",
  "extra",
  "__proto__",
  "constructor",
  "toString",
];

function clone<T>(value: T): T {
  return structuredClone(value);
}

/** Every object and array inside `value` (itself included). */
function containers(value: unknown, into: Array<Record<string, unknown> | unknown[]> = []): typeof into {
  if (typeof value === "object" && value !== null) {
    into.push(value as Record<string, unknown>);
    for (const item of Object.values(value)) containers(item, into);
  }
  return into;
}

function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

/** One to three random changes somewhere inside `value`. */
function mutate<T>(value: T, next: () => number): unknown {
  const pick = <U>(list: readonly U[]): U => list[Math.floor(next() * list.length)];
  const odd = (): unknown => clone(pick(ODD)); // a copy: a value shared by two places could become a cycle
  let root: unknown = clone(value);
  const changes = 1 + Math.floor(next() * 3);
  for (let change = 0; change < changes; change += 1) {
    if (next() < 0.03) {
      root = odd();
      continue;
    }
    const all = containers(root);
    if (all.length === 0) break;
    const target = pick(all);
    if (Array.isArray(target)) {
      const what = next();
      if (what < 0.3 && target.length > 0) target.splice(Math.floor(next() * target.length), 1);
      else if (what < 0.6) target.push(odd());
      else if (target.length > 0) target[Math.floor(next() * target.length)] = odd();
      continue;
    }
    const own = Object.keys(target);
    const what = next();
    if (what < 0.2 && own.length > 0) delete target[pick(own)];
    else if (what < 0.35) setOwn(target, pick(KEYS), odd());
    else if (what < 0.45 && own.length > 0) {
      const key = pick(own);
      const item = target[key];
      delete target[key];
      setOwn(target, pick(KEYS), item);
    } else if (own.length > 0) setOwn(target, pick(own), odd());
  }
  return root;
}

function same(fast: unknown, zod: { success: boolean; data?: unknown }, document: unknown): void {
  const text = (): string => {
    try {
      return JSON.stringify(document);
    } catch {
      return String(document);
    }
  };
  expect(fast !== null, `accepts ${text()}`).to.equal(zod.success);
  if (zod.success) {
    expect(fast, text()).to.deep.equal(zod.data);
    // The same members in the same order.
    expect(JSON.stringify(fast), text()).to.equal(JSON.stringify(zod.data));
    expect(Object.keys(fast as object), text()).to.deep.equal(Object.keys(zod.data as object));
  }
}

describe("fast validators: the same accept and refuse as the zod schemas", function () {
  this.timeout(600_000);
  it("protocol entries: valid ones and 5,000 mutations (as objects and as parsed JSON)", function () {
    const next = seededRandom(16);
    let accepted = 0;
    for (let round = 0; round < 5_000; round += 1) {
      const base = entry(round % 2 === 0);
      const document = round < 2 ? base : mutate(base, next);
      same(fastProtocolEntry(document), safeParseBounded(STRICT_ENTRY, document), document);
      let text: string | undefined;
      try {
        text = JSON.stringify(document);
      } catch {
        text = undefined;
      }
      if (text !== undefined) {
        const parsed: unknown = JSON.parse(text);
        const zod = safeParseBounded(STRICT_ENTRY, parsed);
        same(fastProtocolEntry(parsed), zod, parsed);
        if (zod.success) accepted += 1;
      }
    }
    expect(accepted).to.be.greaterThan(20); // the mutations reach valid documents too, not only broken ones
  });

  it("state data: valid ones and 6,000 mutations (as objects and as parsed JSON)", function () {
    const next = seededRandom(61);
    let accepted = 0;
    for (let round = 0; round < 6_000; round += 1) {
      const base = stateData(round % 7);
      const document = round < 7 ? base : mutate(base, next);
      same(fastStateData(document), safeParseBounded(stateDataSchema, document), document);
      let text: string | undefined;
      try {
        text = JSON.stringify(document);
      } catch {
        text = undefined;
      }
      if (text !== undefined) {
        const parsed: unknown = JSON.parse(text);
        const zod = safeParseBounded(stateDataSchema, parsed);
        same(fastStateData(parsed), zod, parsed);
        if (zod.success) accepted += 1;
      }
    }
    expect(accepted).to.be.greaterThan(20);
  });

  it("members named __proto__ (JSON.parse makes them own members): as zod", function () {
    const line = JSON.stringify(entry(false)).replace(/}$/, ',"__proto__":{"a":1}}');
    const parsed: unknown = JSON.parse(line);
    same(fastProtocolEntry(parsed), safeParseBounded(STRICT_ENTRY, parsed), parsed);
    const body = JSON.stringify(stateData(0))
      .replace(/}$/, ',"__proto__":1}')
      .replace('"fields":{', '"fields":{"__proto__":{"b":2},');
    const state: unknown = JSON.parse(body);
    same(fastStateData(state), safeParseBounded(stateDataSchema, state), state);
  });
});

describe("strict JSON: numbers scanned by hand, as the regular expression did", function () {
  /** The scanner's former rule: the regular expression within 400 characters, not followed by a number character. */
  function formerAccepts(text: string): boolean {
    const match = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(0, 400));
    if (!match) return false;
    const next = text[match[0].length];
    return !(next !== undefined && /[0-9.eE+-]/.test(next)) && match[0].length === text.length;
  }

  it("accepts and refuses the same numbers (random strings of number characters, and long ones)", function () {
    const next = seededRandom(8259);
    const alphabet = "0123456789.eE+-0011";
    const cases: string[] = [
      "0",
      "-0",
      "1",
      "10",
      "01",
      "-",
      "1.",
      "1.5",
      "1e",
      "1e+",
      "1e5",
      "1E-5",
      "-1.5e+10",
      ".5",
    ];
    cases.push("1".repeat(399), "1".repeat(400), "1".repeat(401), "1." + "0".repeat(397), "1." + "0".repeat(398));
    for (let round = 0; round < 20_000; round += 1) {
      const length = 1 + Math.floor(next() * 8);
      let text = "";
      for (let index = 0; index < length; index += 1) text += alphabet[Math.floor(next() * alphabet.length)];
      cases.push(text);
    }
    for (const text of cases) {
      let accepted: boolean;
      try {
        parseStrictJson(`[${text}]`);
        accepted = true;
      } catch {
        accepted = false;
      }
      expect(accepted, text).to.equal(formerAccepts(text));
    }
  });
});

describe("canonical: the one-string form is canonicalize's text", function () {
  it("random JSON values (keys in any script, escapes, numbers of every kind)", function () {
    const next = seededRandom(8785);
    const pick = <U>(list: readonly U[]): U => list[Math.floor(next() * list.length)];
    const keys = ["a", "b", "B", "_", "é", "\u20ac", "\ud83d\ude00", "\u0000", '"', "\\", "10", "2", "", "aa", "a\n"];
    const scalars: unknown[] = [
      null,
      true,
      false,
      0,
      -0,
      1,
      -1.5,
      1e21,
      1e-7,
      123456789.123,
      2 ** 53 + 2,
      "",
      "x\u2028y",
      "\ud800",
      'q"\\/\b\f\n\r\t',
    ];
    const value = (depth: number): unknown => {
      const what = next();
      if (depth > 4 || what < 0.4) return pick(scalars);
      if (what < 0.7) return Array.from({ length: Math.floor(next() * 4) }, () => value(depth + 1));
      const object: Record<string, unknown> = {};
      for (let count = Math.floor(next() * 5); count > 0; count -= 1) object[pick(keys)] = value(depth + 1);
      return object;
    };
    for (let round = 0; round < 3000; round += 1) {
      const document = value(0);
      const expected = canonicalize(document);
      expect(canonicalSmall(document)).to.equal(expected);
      const bytes = Buffer.from(expected, "utf8");
      expect(isCanonicalBytes(document, bytes)).to.equal(true);
      expect(
        isCanonicalBytes(
          JSON.parse(JSON.stringify(document, null, 1)) as unknown,
          Buffer.from(JSON.stringify(document, null, 1)),
        ),
      ).to.equal(canonicalBytes(document).equals(Buffer.from(JSON.stringify(document, null, 1))));
    }
    // Bytes that decode to the canonical text but are not its UTF-8 (an invalid sequence read as U+FFFD).
    const bad = Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xff]), Buffer.from('"}')]);
    expect(isCanonicalBytes(JSON.parse(bad.toString("utf8")) as unknown, bad)).to.equal(false);
  });
});

describe("canonical: isCanonicalBytes compares in place (no text written), as canonicalBytes(value).equals(bytes)", function () {
  it("random values against their canonical bytes, and those bytes changed, cut or extended", function () {
    let seed = 20261204;
    const next = (): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)];
    // Keys inserted out of order (Object.keys keeps insertion order, integer-like keys first), in several scripts.
    const keys = ["b", "a", "10", "9", "é", "€", "😀", "__proto__", "toJSON", "\u0000", "\ud800", "A", "aa"];
    const scalars: unknown[] = [
      0,
      -0,
      1,
      -1.5,
      1e21,
      1e-7,
      2 ** 53,
      true,
      false,
      null,
      "",
      "ü€😀",
      "\udc00x",
      "\u007f",
      'q"\\\n',
    ];
    const value = (depth: number): unknown => {
      const what = next();
      if (depth > 4 || what < 0.4) return pick(scalars);
      if (what < 0.7) return Array.from({ length: Math.floor(next() * 4) }, () => value(depth + 1));
      const object: Record<string, unknown> = {};
      for (let count = Math.floor(next() * 5); count > 0; count -= 1) object[pick(keys)] = value(depth + 1);
      return object;
    };
    let compared = 0;
    for (let round = 0; round < 2000; round += 1) {
      // Through JSON.parse, as the verifier reads a body ("__proto__" an own member, "toJSON" a plain one).
      const document = JSON.parse(JSON.stringify(value(0))) as unknown;
      const canonical = canonicalBytes(document);
      const variants = [
        canonical,
        canonical.subarray(0, canonical.length - 1),
        Buffer.concat([canonical, Buffer.from(" ")]),
      ];
      if (canonical.length > 0) {
        const changed = Buffer.from(canonical);
        const at = Math.floor(next() * changed.length);
        changed[at] = (changed[at] + 1 + Math.floor(next() * 255)) % 256;
        variants.push(changed);
      }
      for (const bytes of variants) {
        expect(isCanonicalBytes(document, bytes), `${canonical.toString("hex")} vs ${bytes.toString("hex")}`).to.equal(
          canonical.equals(bytes),
        );
        compared += 1;
      }
    }
    expect(compared).to.be.greaterThan(7000);
  });
});
