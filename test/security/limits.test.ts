import { expect } from "chai";
import { z } from "zod";
import { canonicalize } from "../../src/protocol/canonical";
import {
  assertJsonDepth,
  decodeUtf8,
  jsonNestingDepth,
  MAX_SCHEMA_ISSUES,
  safeParseBounded,
} from "../../src/protocol/limits";
import { decodePage, pageHeaderLine } from "../../src/protocol/pages";
import { parseHead, protocolEntrySchema, stateDataSchema, wholeProtocolSchema } from "../../src/protocol/schema";

function codeOf(action: () => unknown): string | undefined {
  try {
    action();
  } catch (error) {
    return (error as { code?: string }).code ?? (error as Error).constructor.name;
  }
  return undefined;
}

const deepArray = (depth: number) => "[".repeat(depth) + "]".repeat(depth);

describe("hostile JSON: depth, size of the problem list, UTF-8", function () {
  it("measures nesting without recursion, skipping strings and escapes", function () {
    expect(jsonNestingDepth("{}")).to.equal(1);
    expect(jsonNestingDepth('{"a":[1,{"b":"[[[[\\"{{"}]}')).to.equal(3);
    expect(jsonNestingDepth("12")).to.equal(0);
    expect(jsonNestingDepth(deepArray(200_000))).to.equal(200_000);
    expect(codeOf(() => assertJsonDepth(deepArray(1001), "input"))).to.equal("INPUT_TOO_LARGE");
    expect(codeOf(() => assertJsonDepth(deepArray(1000), "input"))).to.equal(undefined);
  });

  it("canonicalize turns a stack overflow on 100k-deep arrays into INPUT_TOO_LARGE", function () {
    const value = JSON.parse(deepArray(100_000)) as unknown;
    expect(codeOf(() => canonicalize(value))).to.equal("INPUT_TOO_LARGE");
    expect(canonicalize(JSON.parse(deepArray(1000)))).to.equal(deepArray(1000));
  });

  it("parseHead: deep, wrong-typed, non-UTF-8 and BOM documents are coded errors", function () {
    // The strict reader (src/protocol/strict-json.ts) refuses nesting deeper than 1,000 levels before parsing.
    expect(codeOf(() => parseHead(deepArray(100_000)))).to.equal("INVALID_JSON");
    expect(codeOf(() => parseHead('{"a":'.repeat(100_000) + "1" + "}".repeat(100_000)))).to.equal("INVALID_JSON");
    expect(codeOf(() => parseHead(deepArray(50)))).to.equal("PROTOCOL_INVALID"); // parsed, not a protocol
    expect(codeOf(() => parseHead(Buffer.from([0x7b, 0xff, 0x7d])))).to.equal("INVALID_JSON");
    expect(codeOf(() => parseHead(Buffer.from([0xed, 0xa0, 0x80])))).to.equal("INVALID_JSON"); // lone surrogate
    expect(codeOf(() => parseHead(Buffer.from("\ufeff{}")))).to.equal("INVALID_JSON");
    expect(codeOf(() => parseHead(""))).to.equal("INVALID_JSON");
    expect(codeOf(() => decodeUtf8(Buffer.from([0xc0, 0x80]), "x"))).to.equal("INVALID_JSON"); // overlong NUL
  });

  it("a head carrying a million empty entries fails fast with a short message (was: out of memory)", function () {
    const text = '{"instance_protocol":[' + "{},".repeat(1_000_000) + "{}]}";
    let message = "";
    try {
      parseHead(text);
    } catch (error) {
      expect((error as { code?: string }).code).to.equal("PROTOCOL_INVALID");
      message = (error as Error).message;
    }
    expect(message.split("\n").length).to.be.at.most(MAX_SCHEMA_ISSUES + 2);
  });

  it("a whole protocol of a million empty entries (a file input) is refused within the issue limit", function () {
    const json = JSON.parse('{"instance_protocol":[' + "{},".repeat(1_000_000) + "{}]}") as unknown;
    const result = safeParseBounded(wholeProtocolSchema, json);
    expect(result.success).to.equal(false);
    if (!result.success) {
      expect(result.issues.length).to.be.at.most(MAX_SCHEMA_ISSUES);
      expect(result.truncated).to.equal(true);
    }
  });

  it("a page of a million lines: the decoder stops at the first line that is not an entry, and only counts lines past those wanted", function () {
    const instance = "a".repeat(64);
    const header = pageHeaderLine(instance, 0, instance);
    const bytes = Buffer.from(`${header}\n` + "{}\n".repeat(1_000_000));
    const expected = { instanceHash: instance, index: 0, accumulatorBefore: instance };
    expect(codeOf(() => decodePage(bytes, { ...expected, wanted: 1_000_000 }))).to.equal("PAGE_INVALID");
    expect(decodePage(bytes, { ...expected, wanted: 0 }).extraLines).to.equal(1_000_000);
  });

  it("state data of a million empty iteration steps is refused within the issue limit (was: 2.8 GB, 44 s)", function () {
    const data = JSON.parse('{"iteration_path":[' + "{},".repeat(1_000_000) + "{}]}") as unknown;
    const result = safeParseBounded(stateDataSchema, data);
    expect(result.success).to.equal(false);
    if (!result.success) {
      expect(result.issues).to.have.length(MAX_SCHEMA_ISSUES);
      expect(result.truncated).to.equal(true);
    }
  });

  it("a watched SSE state event with two million proof siblings is refused within the issue limit", function () {
    const event = JSON.parse(
      '{"proof":{"root":"x","leaf_index":0,"siblings":[' + "1,".repeat(2_000_000) + "1]}}",
    ) as unknown;
    const result = safeParseBounded(protocolEntrySchema, event);
    expect(result.success).to.equal(false);
    if (!result.success) expect(result.truncated).to.equal(true);
  });

  it("safeParseBounded agrees with zod's safeParse on valid and slightly invalid documents", function () {
    const schema = z.object({ a: z.array(z.number()), b: z.string().regex(/^x+$/, "only x"), c: z.unknown() });
    for (const value of [
      { a: [1, 2], b: "xx", c: null },
      { a: [1, "2"], b: "y", c: 1 },
      { a: "no", b: 3 },
      null,
      [],
      { a: [], b: "x", c: { deep: [[[]]] }, extra: 1 },
    ]) {
      const expected = schema.safeParse(value);
      const actual = safeParseBounded(schema, value);
      expect(actual.success, JSON.stringify(value)).to.equal(expected.success);
      if (actual.success && expected.success) expect(actual.data).to.deep.equal(expected.data);
      if (!actual.success && !expected.success) {
        expect(actual.issues.map((i) => [i.path, i.message])).to.deep.equal(
          expected.error.issues.map((i) => [i.path, i.message]),
        );
        expect(actual.truncated).to.equal(false);
      }
    }
    // A schema that is not strict strips unknown keys as before.
    const stripped = safeParseBounded(protocolEntrySchema.pick({ seq: true }), { seq: 1, junk: [[[]]] });
    expect(stripped).to.deep.equal({ success: true, data: { seq: 1 } });
  });
});
