import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { StatetrailError } from "../../src/errors";
import { loadModel } from "../../src/model/load";
import {
  type AslProblem,
  checkDefinition,
  forEachState,
  structuralProblems,
  substitutePlaceholders,
  validateDefinition,
} from "../../src/model/validate";

const EXAMPLES = path.join(__dirname, "..", "..", "examples");

function paths(problems: AslProblem[]): string[] {
  return problems.map((p) => p.path);
}

function invalid(definition: unknown): StatetrailError {
  try {
    validateDefinition(definition, "test.asl.json");
  } catch (error) {
    expect(error).to.be.instanceOf(StatetrailError);
    expect((error as StatetrailError).code).to.equal("ASL_INVALID");
    return error as StatetrailError;
  }
  expect.fail("expected ASL_INVALID");
}

const pass = (next?: string) => (next ? { Type: "Pass", Next: next } : { Type: "Pass", End: true });

describe("ASL validation", function () {
  it("accepts every example model", async function () {
    const files = fs.readdirSync(EXAMPLES).filter((f) => f.endsWith(".asl.json"));
    expect(files.length).to.be.at.least(5);
    for (const file of files) {
      const model = await loadModel(path.join(EXAMPLES, file));
      const result = checkDefinition(model.definition);
      expect(result.errors, file).to.deep.equal([]);
    }
  });

  it("lists every error with its path, in several states and at several depths", function () {
    const definition = {
      StartAt: "A",
      States: {
        A: { Type: "Pas", Next: "B" },
        B: { Type: "Wait", Seconds: "ten", Next: "M" },
        M: {
          Type: "Map",
          ItemProcessor: {
            StartAt: "X",
            States: { X: { Type: "Pass", OutputPath: "no-dollar", End: true } },
          },
          Next: "C",
        },
        C: { Type: "Pass", Next: "Missing" },
      },
    };
    const result = checkDefinition(definition);
    expect(result.valid).to.equal(false);
    const found = paths(result.errors);
    for (const expected of [
      "/States/A/Type",
      "/States/B/Seconds",
      "/States/M/ItemProcessor/States/X/OutputPath",
      "/States/C/Next",
    ]) {
      expect(found, expected).to.include(expected);
    }
    const error = invalid(definition);
    for (const expected of [
      "/States/A/Type",
      "/States/B/Seconds",
      "/States/M/ItemProcessor/States/X/OutputPath",
      "/States/C/Next",
    ]) {
      expect(error.message).to.contain(expected);
    }
    expect(error.message).to.contain("test.asl.json");
    expect(error.message).to.match(/\(\d+ errors\)/);
  });

  it("reports every dangling name with its path, in branches and iterators too", function () {
    const definition = {
      StartAt: "Choose",
      States: {
        Choose: { Type: "Choice", Choices: [{ Variable: "$.x", IsPresent: true, Next: "Nope1" }], Default: "Nope2" },
        Work: {
          Type: "Task",
          Resource: "arn:aws:lambda:us-east-1:123456789012:function:f",
          Catch: [{ ErrorEquals: ["States.ALL"], Next: "Nope3" }],
          Next: "Par",
        },
        Par: {
          Type: "Parallel",
          Branches: [
            { StartAt: "Nope4", States: { B1: pass() } },
            { StartAt: "B2", States: { B2: pass("Nope5") } },
          ],
          Next: "Loop",
        },
        Loop: {
          Type: "Map",
          Iterator: { StartAt: "I1", States: { I1: pass("Nope6") } },
          End: true,
        },
      },
    };
    const problems = structuralProblems(definition);
    expect(problems.filter((p) => p.code === "MISSING_TRANSITION_TARGET").map((p) => p.path)).to.have.members([
      "/States/Choose/Choices/0/Next",
      "/States/Choose/Default",
      "/States/Work/Catch/0/Next",
      "/States/Par/Branches/0/StartAt",
      "/States/Par/Branches/1/States/B2/Next",
      "/States/Loop/Iterator/States/I1/Next",
    ]);
    for (const n of [1, 2, 3, 4, 5, 6]) expect(invalid(definition).message).to.contain(`"Nope${n}"`);
  });

  it("reports a transition out of a branch or an iterator", function () {
    const definition = {
      StartAt: "Par",
      States: {
        Par: { Type: "Parallel", Branches: [{ StartAt: "In", States: { In: pass("After") } }], Next: "After" },
        After: {
          Type: "Map",
          ItemProcessor: { StartAt: "Item", States: { Item: pass("Par") } },
          End: true,
        },
      },
    };
    const result = checkDefinition(definition);
    const outbound = result.errors.filter((p) => p.code.endsWith("_OUTBOUND_TRANSITION_TARGET"));
    expect(outbound.map((p) => [p.code, p.path])).to.have.deep.members([
      ["BRANCH_OUTBOUND_TRANSITION_TARGET", "/States/Par/Branches/0/States/In/Next"],
      ["MAP_OUTBOUND_TRANSITION_TARGET", "/States/After/ItemProcessor/States/Item/Next"],
    ]);
  });

  it("reports a state machine without a terminal state, and unreachable states with their path", function () {
    const result = checkDefinition({ StartAt: "A", States: { A: pass("B"), B: pass("A"), C: pass() } });
    expect(result.errors.find((p) => p.code === "MISSING_END_STATE")).to.equal(undefined); // C ends
    expect(result.errors.find((p) => p.message.includes("not reachable"))?.path).to.equal("/States/C");
    const loop = checkDefinition({ StartAt: "A", States: { A: pass("B"), B: pass("A") } });
    expect(loop.errors.find((p) => p.code === "MISSING_END_STATE")?.path).to.equal("/States");
  });

  it("accepts ${Placeholder} ARNs and JSONPath filters, and says so in warnings", function () {
    const definition = {
      StartAt: "Filter",
      States: {
        Filter: {
          Type: "Map",
          ItemsPath: "$.orders[?(@.total > 100)]",
          ItemProcessor: {
            StartAt: "Call",
            States: {
              Call: { Type: "Task", Resource: "${ProcessOrderFunctionArn}", End: true },
            },
          },
          Next: "Route",
        },
        Route: {
          Type: "Choice",
          Choices: [{ Variable: "$..priority", IsPresent: true, Next: "Notify" }],
          Default: "Notify",
        },
        Notify: {
          Type: "Task",
          Resource: "arn:${AWS::Partition}:states:::sns:publish",
          Parameters: { TopicArn: "${TopicArn}", "Message.$": "$.orders[?(@.late)].id" },
          End: true,
        },
      },
    };
    const result = checkDefinition(definition);
    expect(result.errors).to.deep.equal([]);
    expect(result.valid).to.equal(true);
    const placeholders = result.warnings.filter((w) => w.code === "PLACEHOLDER");
    expect(paths(placeholders)).to.have.members([
      "/States/Filter/ItemProcessor/States/Call/Resource",
      "/States/Notify/Resource",
      "/States/Notify/Parameters/TopicArn",
    ]);
    expect(placeholders.map((w) => w.message).join(" ")).to.contain("${ProcessOrderFunctionArn}");
    const relaxed = result.warnings.filter((w) => w.code === "RELAXED_PATH");
    expect(paths(relaxed)).to.have.members(["/States/Filter/ItemsPath", "/States/Route/Choices/0/Variable"]);
    expect(validateDefinition(definition)).to.deep.equal(result.warnings);
  });

  it("still refuses what is not a valid path at all, and a filter where a result is written", function () {
    const result = checkDefinition({
      StartAt: "A",
      States: {
        A: { Type: "Map", ItemsPath: "items", ItemProcessor: { StartAt: "I", States: { I: pass() } }, Next: "B" },
        B: { Type: "Pass", ResultPath: "$.out[?(@.x)]", End: true },
      },
    });
    expect(paths(result.errors)).to.include.members(["/States/A/ItemsPath", "/States/B/ResultPath"]);
    expect(result.warnings).to.deep.equal([]);
  });

  it("refuses a placeholder ARN only where an ARN can't be (and never changes the definition)", function () {
    const definition = { StartAt: "A", States: { A: { Type: "Task", Resource: "not an arn", End: true } } };
    const before = JSON.stringify(definition);
    const result = checkDefinition(definition);
    expect(paths(result.errors)).to.include("/States/A/Resource");
    expect(JSON.stringify(definition)).to.equal(before);
  });

  it("substitutes placeholders segment by segment inside ARNs", function () {
    const { definition, found } = substitutePlaceholders({
      a: "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${Name}",
      b: ["${Whole}"],
      Resource: "${Fn}",
    });
    expect(definition).to.deep.equal({
      a: "arn:aws:lambda:us-east-1:123456789012:function:placeholder",
      b: ["placeholder"],
      Resource: "arn:aws:lambda:us-east-1:123456789012:function:placeholder",
    });
    expect(found.map((f) => f.path)).to.deep.equal(["/a", "/a", "/a", "/a", "/b/0", "/Resource"]);
  });

  it("escapes state names in paths (JSON Pointer)", function () {
    const result = checkDefinition({ StartAt: "a/b~c", States: { "a/b~c": pass("x") } });
    expect(paths(result.errors)).to.include("/States/a~1b~0c/Next");
  });

  it("handles what is not a definition at all", function () {
    expect(checkDefinition([]).errors[0].code).to.equal("NOT_AN_OBJECT");
    expect(paths(checkDefinition({ StartAt: 3, States: [] }).errors)).to.include.members(["/StartAt", "/States"]);
  });

  it("visits every state with its containers", function () {
    const seen: string[] = [];
    forEachState(
      {
        StartAt: "P",
        States: {
          P: {
            Type: "Parallel",
            Branches: [
              { StartAt: "M", States: { M: { Type: "Map", Iterator: { StartAt: "T", States: { T: pass() } } } } },
            ],
          },
        },
      },
      (visit) =>
        seen.push(`${visit.name}:${visit.containers.map((c) => `${c.parent}/${c.kind}/${c.branch ?? "-"}`).join(",")}`),
    );
    expect(seen).to.deep.equal(["P:", "M:P/parallel/0", "T:P/parallel/0,M/map/-"]);
  });
});
