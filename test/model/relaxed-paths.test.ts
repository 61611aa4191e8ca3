import { expect } from "chai";
import { LocalEngine } from "../../src/engine/local";
import { type EngineEvent, type ExecutionEndEvent, type StateEnteredEvent } from "../../src/engine/types";
import { StatetrailError } from "../../src/errors";
import { loadModelFromBytes } from "../../src/model/load";
import { type AslProblem, checkDefinition, validateDefinition } from "../../src/model/validate";

/**
 * Issue 12, finding 12: asl-validator refuses payload-template paths real definitions use and the
 * interpreter evaluates (`$.[0]`, `$.Snapshots.[0].State`, `$.[?(@.OU > 0)]`). They are accepted with a
 * RELAXED_PATH warning, never silently; structural validation still refuses broken models.
 */

const LAMBDA = "arn:aws:lambda:us-east-1:123456789012:function:";

function codes(problems: AslProblem[]): string[] {
  return problems.map((p) => `${p.code} ${p.path}`);
}

function refused(definition: unknown): StatetrailError {
  try {
    validateDefinition(definition, "test.asl.json");
  } catch (error) {
    expect(error).to.be.instanceOf(StatetrailError);
    expect((error as StatetrailError).code).to.equal("ASL_INVALID");
    expect((error as StatetrailError).hint)
      .to.be.a("string")
      .and.not.equal("");
    return error as StatetrailError;
  }
  return expect.fail("expected ASL_INVALID");
}

const passWith = (fields: Record<string, unknown>) => ({
  StartAt: "P",
  States: { P: { Type: "Pass", ...fields, End: true } },
});

async function run(definition: object, input: unknown, handlers = {}) {
  const model = loadModelFromBytes(Buffer.from(JSON.stringify(definition)), { source: "relaxed.asl.json" });
  const engine = new LocalEngine({ handlers, skipWaits: true });
  await engine.prepare(model);
  const events: EngineEvent[] = [];
  for await (const event of engine.run(model, { input, executionName: "relaxed-paths" })) events.push(event);
  const states = events.filter((e): e is StateEnteredEvent => e.kind === "state");
  const end = events.find((e): e is ExecutionEndEvent => e.kind === "end")!;
  return { states, end, input: (name: string) => states.find((s) => s.name === name)?.input };
}

describe("ASL validation: JSONPath the service and the interpreter accept, asl-validator does not", function () {
  describe("is accepted with a RELAXED_PATH warning at its path", function () {
    for (const [label, path] of [
      ["an index after a dot", "$.[0]"],
      ["an index after a dot inside a path", "$.Snapshots.[0].State"],
      ["a filter after a dot", "$.[?(@.OU > 0)]"],
      ["a filter on a nested field compared with a string", "$.Items[?(@.Type.Text == 'X')]"],
    ] as const) {
      it(`${label} (${path}) in a payload template`, function () {
        const result = checkDefinition(passWith({ Parameters: { "v.$": path, nested: { "w.$": path } } }));
        expect(result.errors).to.deep.equal([]);
        expect(codes(result.warnings)).to.deep.equal([
          "RELAXED_PATH /States/P/Parameters/v.$",
          "RELAXED_PATH /States/P/Parameters/nested/w.$",
        ]);
        expect(result.warnings[0].message).to.contain(path);
      });
    }

    it("in InputPath, OutputPath, ResultSelector, ItemSelector, ItemsPath and a Choice Variable", function () {
      const result = checkDefinition({
        StartAt: "T",
        States: {
          T: {
            Type: "Task",
            Resource: `${LAMBDA}describe`,
            InputPath: "$.[0]",
            ResultSelector: { "state.$": "$.Snapshots.[0].State" },
            OutputPath: "$.[?(@.OU > 0)]",
            Next: "C",
          },
          C: {
            Type: "Choice",
            Choices: [{ Variable: "$.[0].OU", NumericGreaterThan: 0, Next: "M" }],
            Default: "M",
          },
          M: {
            Type: "Map",
            ItemsPath: "$.Snapshots.[0].Items",
            ItemSelector: { "item.$": "$$.Map.Item.Value", "first.$": "$.[0]" },
            ItemProcessor: { StartAt: "X", States: { X: { Type: "Pass", End: true } } },
            End: true,
          },
        },
      });
      expect(result.errors).to.deep.equal([]);
      expect(codes(result.warnings)).to.have.members([
        "RELAXED_PATH /States/T/InputPath",
        "RELAXED_PATH /States/T/ResultSelector/state.$",
        "RELAXED_PATH /States/T/OutputPath",
        "RELAXED_PATH /States/C/Choices/0/Variable",
        "RELAXED_PATH /States/M/ItemsPath",
        "RELAXED_PATH /States/M/ItemSelector/first.$",
      ]);
    });

    it("inside an intrinsic function's arguments", function () {
      const result = checkDefinition(passWith({ Parameters: { "v.$": "States.ArrayGetItem($.[0].Items, 0)" } }));
      expect(result.errors).to.deep.equal([]);
      expect(codes(result.warnings)).to.deep.equal(["RELAXED_PATH /States/P/Parameters/v.$"]);
    });

    it("tells the auditor how the interpreter reads `.[` (recursive descent), where it can differ from AWS", function () {
      const [warning] = checkDefinition(passWith({ Parameters: { "v.$": "$.[0]" } })).warnings;
      expect(warning.message).to.contain("..[");
    });
  });

  describe("still refuses, with ASL_INVALID and the path", function () {
    it("a model with such paths whose Next names no state", function () {
      const error = refused({
        StartAt: "P",
        States: { P: { Type: "Pass", Parameters: { "v.$": "$.[0]" }, Next: "Nowhere" } },
      });
      expect(error.message).to.contain("/States/P/Next");
    });

    it("a model with such paths and a state of an unknown type", function () {
      const error = refused({
        StartAt: "P",
        States: { P: { Type: "Pass", Parameters: { "v.$": "$.[0]" }, Next: "Q" }, Q: { Type: "Teleport", End: true } },
      });
      expect(error.message).to.contain("/States/Q/Type");
    });

    for (const [label, path] of [
      ["a path without the leading $", "Snapshots[0].State"],
      ["an unbalanced bracket", "$.Snapshots.[0"],
      ["a filter that does not parse", "$.Items[?(@.a ==)]"],
      ["an empty filter", "$.Items[?()]"],
      ["a dot followed by nothing", "$.a."],
    ] as const) {
      it(`${label} (${path})`, function () {
        const error = refused(passWith({ Parameters: { "v.$": path } }));
        expect(error.message).to.contain("/States/P/Parameters/v.$");
      });
    }

    it("a relaxed form in ResultPath, which must be a Reference Path", function () {
      const error = refused(passWith({ ResultPath: "$.[0]" }));
      expect(error.message).to.contain("/States/P/ResultPath");
    });
  });

  describe("runs on the local engine, with the values the interpreter computes", function () {
    it("`$.Snapshots.[0].State` and `$.[0]` in Parameters and ResultSelector of a Task with a handler", async function () {
      const definition = {
        StartAt: "Describe",
        States: {
          Describe: {
            Type: "Task",
            Resource: `${LAMBDA}describe-snapshots`,
            ResultSelector: { "state.$": "$.Snapshots.[0].State", "id.$": "$.Snapshots.[0].Id" },
            ResultPath: "$.latest",
            Next: "Ready?",
          },
          "Ready?": {
            Type: "Choice",
            Choices: [{ Variable: "$.latest.state", StringEquals: "available", Next: "Copy" }],
            Default: "Fail",
          },
          Copy: { Type: "Pass", Parameters: { "snapshot.$": "$.latest.id", "first.$": "$.Ids.[0]" }, End: true },
          Fail: { Type: "Fail", Error: "NotReady" },
        },
      };
      const { end, input } = await run(
        definition,
        { Ids: ["a", "b"] },
        {
          Describe: async () => ({
            Snapshots: [
              { Id: "snap-1", State: "available" },
              { Id: "snap-2", State: "creating" },
            ],
          }),
        },
      );
      expect(input("Ready?")).to.deep.equal({ Ids: ["a", "b"], latest: { state: "available", id: "snap-1" } });
      expect(end.status).to.equal("succeeded");
      expect(end.output).to.deep.equal({ snapshot: "snap-1", first: "a" });
    });

    it("`$.[0]` on an array input and `$.[?(@.OU > 0)]` selecting the matching items", async function () {
      const definition = {
        StartAt: "First",
        States: {
          First: { Type: "Pass", Parameters: { "first.$": "$.[0]", "positive.$": "$.[?(@.OU > 0)]" }, Next: "Count" },
          Count: {
            Type: "Task",
            Resource: `${LAMBDA}count`,
            Parameters: { "items.$": "$.positive" },
            End: true,
          },
        },
      };
      const seen: unknown[] = [];
      const { end, input } = await run(
        definition,
        [
          { Name: "a", OU: 2 },
          { Name: "b", OU: 0 },
          { Name: "c", OU: 5 },
        ],
        {
          Count: async (taskInput: { items: unknown[] }) => {
            seen.push(taskInput);
            return { count: taskInput.items.length };
          },
        },
      );
      expect(input("Count")).to.deep.equal({
        first: { Name: "a", OU: 2 },
        positive: [
          { Name: "a", OU: 2 },
          { Name: "c", OU: 5 },
        ],
      });
      expect(seen).to.deep.equal([
        {
          items: [
            { Name: "a", OU: 2 },
            { Name: "c", OU: 5 },
          ],
        },
      ]);
      expect(end.status).to.equal("succeeded");
      expect(end.output).to.deep.equal({ count: 2 });
    });
  });
});
