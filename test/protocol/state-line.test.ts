import { expect } from "chai";
import { sha256Hex } from "../../src/chain/hash";
import { canonicalBytes } from "../../src/protocol/canonical";
import { readStateDocument, sealState } from "../../src/protocol/disclosure";
import { safeParseBounded } from "../../src/protocol/limits";
import { fastStateData, stateDataSchema, type StateContent, type StateData } from "../../src/protocol/schema";
import { fastStateLine } from "../../src/protocol/state-line";
import { byteMutations, canonicalJsonOf } from "../helpers/byte-mutations";

/*
 * A state document's data line is read straight from its bytes when it is canonical and printable ASCII
 * (src/protocol/state-line.ts), any other line the general way. A byte reader that accepted a line the general way
 * refuses, or read other data from it, would let a forged state pass: here both see the same lines (good ones, and
 * every byte of them altered, removed or doubled) and the byte reader must decline (null) or give exactly the data
 * of the reference: the strict parser, the canonical comparison and the schema.
 */

/** The reference: the state data of a canonical line, or null (fastStateData is zod's equal: fast-validators.test). */
function reference(line: Buffer): StateData | null {
  const json = canonicalJsonOf(line);
  return json === null ? null : fastStateData(json);
}

/** {@link reference} with the zod schema itself. */
function referenceByZod(line: Buffer): StateData | null {
  const json = canonicalJsonOf(line);
  const parsed = json === null ? null : safeParseBounded(stateDataSchema, json);
  return parsed?.success ? (parsed.data as StateData) : null;
}

function content(overrides: Partial<StateContent> = {}): StateContent {
  return {
    statetrail_state: 3,
    instance_hash: sha256Hex("instance"),
    seq: 17,
    state_name: "Score",
    state_type: "Task",
    iteration_path: [],
    attempt: 0,
    caught: null,
    context: null,
    input: { batchId: "b-1", i: 5 },
    outcome: { result: { score: 37 } },
    ...overrides,
  };
}

const dataLine = (value: StateContent): Buffer => sealState(value).dataBytes;

/** The byte reader agrees with the reference on `line`: it declines, or reads the same data. Whether it read it. */
function agrees(line: Buffer): boolean {
  const fast = fastStateLine(line);
  if (fast === null) return false;
  const expected = reference(line);
  if (expected === null)
    expect.fail(`the byte reader accepted a line the reference refuses: ${line.toString("latin1")}`);
  // Same members, values and order, compared as text (chai's deep equality is a hundred times slower).
  if (JSON.stringify(fast) !== JSON.stringify(expected)) expect(fast).to.deep.equal(expected);
  return true;
}

describe("state data lines read from their bytes (src/protocol/state-line.ts)", () => {
  const variants: Array<[string, StateContent]> = [
    ["a Task", content()],
    ["a state in a Map iteration", content({ iteration_path: [{ parent: "Each item", kind: "map", index: 12 }] })],
    [
      "a state in a Parallel branch inside a Map",
      content({
        iteration_path: [
          { parent: "Each item", kind: "map", index: 3 },
          { parent: "Both", kind: "parallel", index: 1 },
        ],
      }),
    ],
    ["a retry", content({ attempt: 2, seq: 0 })],
    ["the end", content({ state_name: "(end)", state_type: "ExecutionSucceeded" })],
    [
      "non-ASCII names (2-, 3- and 4-byte UTF-8)",
      content({
        state_name: "Zahlung prüfen ✓",
        iteration_path: [{ parent: "Für jede Position 🚀", kind: "map", index: 1 }],
      }),
    ],
  ];

  for (const [name, value] of variants) {
    it(`reads the tracker's data line of ${name} as the general path does`, () => {
      const sealed = sealState(value);
      const line = sealed.dataBytes;
      const fast = fastStateLine(line);
      expect(fast).to.not.equal(null);
      expect(fast).to.deep.equal(referenceByZod(line));
      expect(JSON.stringify(fast)).to.equal(JSON.stringify(reference(line)));
      expect(fast).to.deep.equal(sealed.data);
      expect(readStateDocument(sealed.document).data).to.deep.equal(fast);
    });
  }

  it("declines what it does not read, and the general path decides", () => {
    const declined: Array<[string, StateContent]> = [
      ["a name with a quote", content({ state_name: 'Say "hi"' })],
      ["a parent with a backslash", content({ iteration_path: [{ parent: "a\\b", kind: "map", index: 0 }] })],
      ["a seq of 16 digits", content({ seq: 1_000_000_000_000_000 })],
    ];
    for (const [name, value] of declined) {
      const sealed = sealState(value);
      expect(fastStateLine(sealed.dataBytes), name).to.equal(null);
      expect(readStateDocument(sealed.document).data, name).to.deep.equal(sealed.data);
    }
  });

  it("accepts nothing the general path refuses: every byte of good lines altered, removed or doubled", () => {
    let lines = 0;
    let read = 0;
    for (const [, value] of variants) {
      for (const altered of byteMutations(dataLine(value), 17)) {
        if (agrees(altered)) read += 1;
        lines += 1;
      }
    }
    expect(lines).to.be.greaterThan(5_000);
    // Not vacuous: many altered lines are still state data (a hex digit for another), and most are not.
    expect(read).to.be.greaterThan(500);
    expect(lines - read).to.be.greaterThan(1_000);
  });

  it("refuses values the schema refuses even in the exact canonical frame", () => {
    const data = sealState(content()).data;
    const refused: unknown[] = [
      { ...data, instance_hash: data.instance_hash.toUpperCase() },
      { ...data, fields: { ...data.fields, input: data.fields.input.slice(1) } },
      { ...data, state_type: "Lambda" },
      { ...data, statetrail_state: 2 },
      { ...data, iteration_path: [{ parent: "p", kind: "loop", index: 0 }] },
      { ...data, iteration_path: [{ parent: "p", kind: "map", index: -1 }] },
      { ...data, seq: 1.5 },
      { ...data, extra: 1 },
      { ...data, fields: { ...data.fields, extra: sha256Hex("x") } },
    ];
    for (const value of refused) {
      const line = canonicalBytes(value);
      expect(fastStateLine(line), line.toString()).to.equal(null);
      expect(referenceByZod(line), line.toString()).to.equal(null);
    }
  });
});
