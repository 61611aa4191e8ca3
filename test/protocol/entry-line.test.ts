import { expect } from "chai";
import { sha256Hex } from "../../src/chain/hash";
import { canonicalize } from "../../src/protocol/canonical";
import { fastEntryLine } from "../../src/protocol/entry-line";
import { entryLine, readEntryLine } from "../../src/protocol/pages";
import { safeParseBounded } from "../../src/protocol/limits";
import { fastProtocolEntry, protocolEntrySchema, type ProtocolEntry } from "../../src/protocol/schema";
import { byteMutations, canonicalJsonOf } from "../helpers/byte-mutations";

/*
 * The page reader reads a canonical entry line straight from its bytes (src/protocol/entry-line.ts) and any other
 * line the general way. A byte reader that accepted a line the general way refuses, or read another entry from it,
 * would let a forged page line pass: here both see the same lines (good ones, and every one of their bytes altered,
 * removed or doubled) and the byte reader must either decline (null) or give exactly the entry of the reference: the
 * strict parser, the canonical comparison and the zod schema.
 */

const STRICT_ENTRY = protocolEntrySchema.strict();

/**
 * The reference: the entry of a canonical line, or null. fastProtocolEntry accepts exactly what the zod schema does
 * (test/protocol/fast-validators.test.ts) and is a thousand times faster: zod decides the named cases below.
 */
function reference(line: Buffer): ProtocolEntry | null {
  const json = canonicalJsonOf(line);
  return json === null ? null : fastProtocolEntry(json);
}

/** {@link reference} with the zod schema itself. */
function referenceByZod(line: Buffer): ProtocolEntry | null {
  const json = canonicalJsonOf(line);
  const parsed = json === null ? null : safeParseBounded(STRICT_ENTRY, json);
  return parsed?.success ? parsed.data : null;
}

function entry(overrides: Partial<ProtocolEntry> = {}): ProtocolEntry {
  const stateHash = sha256Hex("state");
  return {
    event_type: "Register State",
    seq: 41,
    state_name: "Charge card",
    state_type: "Task",
    state_hash: stateHash,
    prev_state_hash: sha256Hex("previous"),
    timestamp: 1_764_000_000,
    block_nr: 1234,
    client_address: "0xAbC0000000000000000000000000000000000dEf",
    transaction_hash: "0x" + sha256Hex("tx"),
    state_data: `https://issuer.example:8443/states/${stateHash}`,
    proof: {
      root: "0x" + sha256Hex("root"),
      leaf_index: 7,
      siblings: ["0x" + sha256Hex("a"), "0x" + sha256Hex("b"), "0x" + sha256Hex("c")],
    },
    ...overrides,
  };
}

const lineOf = (value: unknown): Buffer => Buffer.from(canonicalize(value), "utf8");

/** The byte reader agrees with the reference on `line`: it declines, or reads the same entry. Whether it read it. */
function agrees(line: Buffer): boolean {
  const fast = fastEntryLine(line);
  if (fast === null) return false;
  const expected = reference(line);
  if (expected === null)
    expect.fail(`the byte reader accepted a line the reference refuses: ${line.toString("latin1")}`);
  // Same members, values and order (no member of either is undefined): compared as text, chai's deep equality being
  // a hundred times slower over some 30,000 lines.
  const text = JSON.stringify(fast);
  if (text !== JSON.stringify(expected)) expect(fast).to.deep.equal(expected);
  if (JSON.stringify(readEntryLine(line)) !== text) expect(readEntryLine(line)).to.deep.equal(expected);
  return true;
}

describe("entry lines read from their bytes (src/protocol/entry-line.ts)", () => {
  const variants: Array<[string, ProtocolEntry]> = [
    ["anchored", entry()],
    ["registered (no proof)", entry({ proof: null })],
    ["a proof without siblings", entry({ proof: { root: "0x" + sha256Hex("r"), leaf_index: 0, siblings: [] } })],
    ["seq 0, block 0, timestamp 0", entry({ seq: 0, block_nr: 0, timestamp: 0 })],
    ["the largest number read here", entry({ seq: 999_999_999_999_999 })],
    ["an end entry", entry({ state_type: "ExecutionSucceeded", state_name: "(end)" })],
    [
      "a non-ASCII name (2-, 3- and 4-byte UTF-8) and URL",
      entry({ state_name: "Zahlung prüfen ✓ 🚀", state_data: "https://issuer.example/states/é" }),
    ],
    ["DEL and U+2028 in a name (JSON.stringify leaves both unescaped)", entry({ state_name: "a\u007fb\u2028c" })],
  ];

  for (const [name, value] of variants) {
    it(`reads the tracker's line of ${name} as the general path does`, () => {
      const line = Buffer.from(entryLine(value), "utf8");
      expect(fastEntryLine(line)).to.deep.equal(referenceByZod(line));
      expect(fastEntryLine(line)).to.deep.equal(value);
    });
  }

  it("declines what it does not read, and the general path decides", () => {
    const declined: Array<[string, ProtocolEntry]> = [
      ["a name with a quote (escaped)", entry({ state_name: 'Say "hi"' })],
      ["a name with a backslash", entry({ state_name: "a\\b" })],
      ["a name with a control character", entry({ state_name: "tab\there" })],
      ["a number of 16 digits", entry({ timestamp: 1_000_000_000_000_000 })],
    ];
    for (const [name, value] of declined) {
      const line = Buffer.from(entryLine(value), "utf8");
      expect(fastEntryLine(line), name).to.equal(null);
      expect(readEntryLine(line), name).to.deep.equal(value); // read the general way
    }
  });

  it("accepts nothing the general path refuses: every byte of good lines altered, removed or doubled", () => {
    let lines = 0;
    let read = 0;
    for (const [, value] of variants) {
      for (const altered of byteMutations(Buffer.from(entryLine(value), "utf8"), 16)) {
        if (agrees(altered)) read += 1;
        lines += 1;
      }
    }
    expect(lines).to.be.greaterThan(5_000);
    // Not vacuous: many altered lines are still entries (a hex digit for another), and most are not.
    expect(read).to.be.greaterThan(1_000);
    expect(lines - read).to.be.greaterThan(1_000);
  });

  it("refuses values the schema refuses even in the exact canonical frame", () => {
    const refused: unknown[] = [
      { ...entry(), state_hash: sha256Hex("x").toUpperCase() }, // state hashes are lowercase
      { ...entry(), prev_state_hash: "0x" + sha256Hex("x").slice(2) }, // no 0x on state hashes
      { ...entry(), proof: { ...entry().proof, root: "0x" + sha256Hex("r").toUpperCase() } }, // Merkle nodes lowercase
      { ...entry(), proof: { ...entry().proof, siblings: ["0x" + sha256Hex("s").slice(1)] } }, // 63 digits
      { ...entry(), client_address: "0x" + "g".repeat(40) },
      { ...entry(), state_type: "Lambda" },
      { ...entry(), event_type: "Register state" },
      { ...entry(), seq: -1 },
      { ...entry(), seq: 1.5 },
      { ...entry(), transaction_hash: "0x" + sha256Hex("t").slice(0, 62) },
      { ...entry(), extra: 1 },
    ];
    for (const value of refused) {
      const line = lineOf(value);
      expect(fastEntryLine(line), line.toString()).to.equal(null);
      expect(referenceByZod(line), line.toString()).to.equal(null);
      expect(() => readEntryLine(line), line.toString()).to.throw();
    }
  });

  it("refuses a line that is valid JSON of a valid entry but not its canonical form", () => {
    const value = entry();
    const spaced = Buffer.from(JSON.stringify(value, null, 1).replace(/\n/g, ""), "utf8");
    const unsorted = Buffer.from(JSON.stringify(value), "utf8"); // members in the object's order
    const doubled = Buffer.from(canonicalize(value).replace('{"block_nr":1234,', '{"block_nr":1,"block_nr":1234,'));
    for (const line of [spaced, unsorted, doubled]) {
      expect(fastEntryLine(line)).to.equal(null);
      expect(() => readEntryLine(line)).to.throw(/canonical|twice|duplicate/i);
    }
  });
});
