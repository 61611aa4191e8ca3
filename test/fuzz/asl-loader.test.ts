import { expect } from "chai";
import fc from "fast-check";
import { sha256Hex } from "../../src/chain/hash";
import { analyzeLocalSupport } from "../../src/model/features";
import { loadModelFromBytes } from "../../src/model/load";
import { validateModel } from "../../src/model/validate";
import {
  codedOrOk,
  exampleModels,
  mutate,
  mutateBytes,
  mutationArb,
  type Mutation,
  runs,
  textMutationArb,
  watchUnhandledRejections,
  fuzzTimeout,
} from "./helpers";

/**
 * The ASL loader on hostile bytes: every outcome is a loaded model whose hash is the SHA-256 of the exact bytes,
 * or a coded error (INVALID_JSON, INPUT_TOO_LARGE, ASL_INVALID, ...). Never a TypeError, RangeError or hang.
 */

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const ALLOWED = new Set(["INVALID_JSON", "INPUT_TOO_LARGE", "ASL_INVALID", "ASL_UNSUPPORTED"]);

/** Load, then run everything a loaded model goes through before an engine sees it. */
function check(bytes: Uint8Array): string {
  const outcome = codedOrOk(() => loadModelFromBytes(bytes, { maxBytes: 256 * 1024 }));
  if (!outcome.ok) {
    expect(ALLOWED, `code ${outcome.code}`).to.include(outcome.code);
    return outcome.code;
  }
  const model = outcome.value;
  expect(model.hash).to.equal(sha256Hex(Buffer.from(bytes)));
  expect(Buffer.from(bytes).equals(model.bytes)).to.equal(true);
  const validated = codedOrOk(() => validateModel(model));
  if (!validated.ok) expect(ALLOWED).to.include(validated.code);
  codedOrOk(() => analyzeLocalSupport(model.definition));
  return "loaded";
}

describe("fuzz: ASL loader", function () {
  this.timeout(fuzzTimeout());
  watchUnhandledRejections();
  const examples = exampleModels();
  const outcomes = new Map<string, number>();
  const count = (outcome: string): void => void outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);

  after(function () {
    // Not an assertion: shows the mutations reach past the JSON syntax into validation.
    if (process.env.STATETRAIL_FUZZ_VERBOSE) console.log("    outcomes:", Object.fromEntries(outcomes));
  });

  it("random bytes", function () {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => void count(check(bytes))),
      { numRuns: runs(200) },
    );
  });

  it("random JSON documents", function () {
    fc.assert(
      fc.property(fc.json({ maxDepth: 6 }), (text) => void count(check(Buffer.from(text, "utf8")))),
      { numRuns: runs(100) },
    );
  });

  it("random state machines of every state type", function () {
    const stateArb = fc.record(
      {
        Type: fc.constantFrom("Task", "Pass", "Choice", "Wait", "Parallel", "Map", "Succeed", "Fail", "Nope"),
        Next: fc.constantFrom("A", "B", "C", "Missing"),
        End: fc.boolean(),
        Resource: fc.constantFrom("arn:aws:lambda:us-east-1:123456789012:function:f", "x", "${Fn}"),
        Seconds: fc.oneof(fc.integer({ min: -5, max: 5 }), fc.constant("5")),
        Choices: fc.array(
          fc.record({
            Variable: fc.constantFrom("$.a", "$", "$.[?(@.x > 0)]", "bad"),
            NumericEquals: fc.integer(),
            Next: fc.constantFrom("A", "B", "Missing"),
          }),
          { maxLength: 3 },
        ),
        Default: fc.constantFrom("A", "B", "Missing"),
        Branches: fc.constant([{ StartAt: "X", States: { X: { Type: "Pass", End: true } } }]),
        ItemProcessor: fc.constant({ StartAt: "Y", States: { Y: { Type: "Succeed" } } }),
        ItemsPath: fc.constantFrom("$.items", "$$", "nope"),
        QueryLanguage: fc.constantFrom("JSONPath", "JSONata", 3),
        Parameters: fc.jsonValue({ maxDepth: 2 }),
        ResultPath: fc.constantFrom("$.r", null, "$$.x", "bad"),
        Retry: fc.constant([{ ErrorEquals: ["States.ALL"], MaxAttempts: 2 }]),
        Catch: fc.constant([{ ErrorEquals: ["States.ALL"], Next: "B" }]),
      },
      { requiredKeys: ["Type"] },
    );
    const machineArb = fc.record(
      {
        StartAt: fc.constantFrom("A", "B", "Missing"),
        States: fc.dictionary(fc.constantFrom("A", "B", "C"), stateArb, { minKeys: 1, maxKeys: 3 }),
        TimeoutSeconds: fc.integer(),
        Comment: fc.string(),
      },
      { requiredKeys: ["StartAt", "States"] },
    );
    fc.assert(
      fc.property(machineArb, (machine) => void count(check(Buffer.from(JSON.stringify(machine))))),
      { numRuns: runs(25) },
    );
  });

  it("mutated example models (JSON-level)", function () {
    fc.assert(
      fc.property(
        fc.constantFrom(...examples),
        fc.array(mutationArb, { minLength: 1, maxLength: 4 }),
        fc.boolean(),
        (example, mutations, pretty) => {
          const json = JSON.parse(example.bytes.toString("utf8")) as Json;
          const text = JSON.stringify(mutate(json, mutations), null, pretty ? 2 : undefined);
          count(check(Buffer.from(text ?? "", "utf8")));
        },
      ),
      { numRuns: runs(30) },
    );
  });

  it("regression: malformed nestings that made asl-validator throw a TypeError (found by the JSON-level property)", function () {
    // Found by the JSON-level property above (seed -1244487246): now VALIDATOR_FAILED, a coded problem.
    const example = examples.find((e) => e.name === "refund-request.asl.json")!;
    const mutations: Mutation[] = [
      { kind: "duplicate-array", pick: 1272019904, times: 6 },
      { kind: "insert", pick: 2147483619, key: "Iterator", value: null },
      { kind: "replace", pick: 94524643, value: {} },
    ];
    const text = JSON.stringify(mutate(JSON.parse(example.bytes.toString("utf8")) as Json, mutations));
    count(check(Buffer.from(text, "utf8")));
    // Seed 808904336: Branches: null inserted into a deeply wrapped batch-scoring made it throw reading 'forEach'.
    const batch = examples.find((e) => e.name === "batch-scoring.asl.json")!;
    const wrapped = mutate(JSON.parse(batch.bytes.toString("utf8")) as Json, [
      { kind: "wrap", pick: 4, depth: 8 },
      { kind: "insert", pick: 423933625, key: "Branches", value: null },
    ]);
    count(check(Buffer.from(JSON.stringify(wrapped), "utf8")));
  });

  it("mutated example models (byte-level: broken syntax, invalid UTF-8, BOM, deep brackets)", function () {
    fc.assert(
      fc.property(
        fc.constantFrom(...examples),
        fc.array(textMutationArb, { minLength: 1, maxLength: 4 }),
        (example, mutations) => void count(check(mutateBytes(example.bytes, mutations))),
      ),
      { numRuns: runs(150) },
    );
  });

  it("edge cases: empty, BOM, duplicate keys, 100k-deep nesting, over the size limit", function () {
    const cases: [string, string][] = [
      ["", "INVALID_JSON"],
      ["\ufeff{}", "INVALID_JSON"],
      ['{"StartAt":"A","StartAt":"B","States":{}}', "INVALID_JSON"],
      ["[".repeat(100_000) + "]".repeat(100_000), "INVALID_JSON"],
      ['{"a":'.repeat(5_000) + "1" + "}".repeat(5_000), "INVALID_JSON"],
      ['{"Comment":"' + "x".repeat(300 * 1024) + '"}', "INPUT_TOO_LARGE"],
      ["[]", "ASL_INVALID"],
      ["null", "ASL_INVALID"],
      // asl-validator threw TypeErrors on these (INTERNAL) before validate.ts gave it a sanitised copy:
      ['{"StartAt":"A","States":null}', "ASL_INVALID"],
      ['{"StartAt":"A","States":{"A":null}}', "ASL_INVALID"],
      [
        '{"StartAt":"A","States":{"A":{"Type":"Map","ItemProcessor":{"StartAt":"X","States":{"X":7}},"End":true}}}',
        "ASL_INVALID",
      ],
      [
        '{"StartAt":"A","States":{"A":{"Type":"Parallel","Branches":[{"StartAt":"X","States":"x"}],"End":true}}}',
        "ASL_INVALID",
      ],
      // ...and refused or crashed on valid models whose data has a "States" key (AWS accepts them):
      ['{"StartAt":"A","States":{"A":{"Type":"Pass","Result":{"States":{"CA":"California"}},"End":true}}}', "loaded"],
      [
        '{"StartAt":"A","States":{"A":{"Type":"Pass","Result":{"States":{"CA":{"name":"California"}}},"End":true}}}',
        "loaded",
      ],
      ['{"StartAt":"A","States":{"A":{"Type":"Pass","Parameters":{"States":null},"End":true}}}', "loaded"],
      ['{"StartAt":"A","States":{"A":{"Type":"Pass","Result":{"Next":"page-2","StartAt":"x"},"End":true}}}', "loaded"],
      ['{"StartAt":"A","States":{"A":{"Type":"Pass","Result":{"Branches":1,"Iterator":[null]},"End":true}}}', "loaded"],
    ];
    for (const [text, code] of cases) expect(check(Buffer.from(text, "utf8")), text.slice(0, 40)).to.equal(code);
    expect(check(Buffer.from([0x7b, 0x22, 0xc3, 0x28, 0x22, 0x3a, 0x31, 0x7d]))).to.equal("INVALID_JSON");
  });
});
