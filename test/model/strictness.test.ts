import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { StatetrailError } from "../../src/errors";
import { loadModelFromBytes } from "../../src/model/load";
import {
  type AslProblem,
  awsRefusals,
  checkDefinition,
  validateDefinition,
  validateModel,
} from "../../src/model/validate";

/**
 * Issue 12, finding 10: with `--engine aws`, AWS Step Functions is the authority on validity. Validation with
 * strictness "aws" warns about what asl-validator refuses and only refuses what is structurally broken.
 */

// asl-validator refuses this Task (TimeoutSeconds must be an integer); AWS decides at CreateStateMachine.
const REFUSED_BY_ASL_VALIDATOR = {
  StartAt: "T",
  States: {
    T: {
      Type: "Task",
      Resource: "arn:aws:states:::lambda:invoke",
      TimeoutSeconds: "sixty",
      End: true,
    },
  },
};

function throwsAslInvalid(run: () => unknown): StatetrailError {
  try {
    run();
  } catch (error) {
    expect(error).to.be.instanceOf(StatetrailError);
    expect((error as StatetrailError).code).to.equal("ASL_INVALID");
    expect((error as StatetrailError).hint).to.be.a("string");
    return error as StatetrailError;
  }
  return expect.fail("expected ASL_INVALID");
}

const codes = (problems: AslProblem[]) => problems.map((p) => `${p.code} ${p.path}`);

describe("ASL validation strictness", function () {
  it("local (the default) refuses what asl-validator refuses", function () {
    const error = throwsAslInvalid(() => validateDefinition(REFUSED_BY_ASL_VALIDATOR, "t.asl.json"));
    expect(error.message).to.contain("/States/T/TimeoutSeconds");
    expect(checkDefinition(REFUSED_BY_ASL_VALIDATOR, { strictness: "local" }).valid).to.equal(false);
  });

  it("aws returns asl-validator's findings as ASL_VALIDATOR_REFUSED warnings with their paths, and does not throw", function () {
    const warnings = validateDefinition(REFUSED_BY_ASL_VALIDATOR, "t.asl.json", { strictness: "aws" });
    expect(codes(warnings)).to.deep.equal(["ASL_VALIDATOR_REFUSED /States/T/TimeoutSeconds"]);
    expect(warnings[0].message).to.contain("AWS Step Functions decides");
  });

  it("aws keeps relaxed paths and placeholders as warnings too", function () {
    const warnings = validateDefinition(
      {
        StartAt: "P",
        States: {
          P: { Type: "Task", Resource: "${Fn}", Parameters: { "v.$": "$.Items[?(@.Type.Text == 'X')]" }, End: true },
        },
      },
      "t.asl.json",
      { strictness: "aws" },
    );
    expect(warnings.map((w) => w.code)).to.have.members(["PLACEHOLDER", "RELAXED_PATH"]);
  });

  for (const [label, definition, path] of [
    ["a Next naming no state", { StartAt: "A", States: { A: { Type: "Pass", Next: "B" } } }, "/States/A/Next"],
    ["a StartAt naming no state", { StartAt: "Z", States: { A: { Type: "Pass", End: true } } }, "/StartAt"],
    ["an unknown state type", { StartAt: "A", States: { A: { Type: "Teleport", End: true } } }, "/States/A/Type"],
    ["a state that is not an object", { StartAt: "A", States: { A: "Pass" } }, "/States/A"],
    ["no terminal state", { StartAt: "A", States: { A: { Type: "Pass", Next: "A" } } }, "/States"],
  ] as const) {
    it(`aws still refuses ${label} with ASL_INVALID and its path`, function () {
      const error = throwsAslInvalid(() => validateDefinition(definition, "t.asl.json", { strictness: "aws" }));
      expect(error.message).to.contain(path);
    });
  }

  it("a model loaded with strictness aws keeps it: validateModel (the tracker's check before registering) honours it", function () {
    const bytes = Buffer.from(JSON.stringify(REFUSED_BY_ASL_VALIDATOR));
    throwsAslInvalid(() => loadModelFromBytes(bytes, { source: "t.asl.json" }));
    const seen: AslProblem[] = [];
    const model = loadModelFromBytes(bytes, {
      source: "t.asl.json",
      strictness: "aws",
      onWarning: (w) => seen.push(w),
    });
    expect(model.strictness).to.equal("aws");
    expect(codes(seen)).to.deep.equal(["ASL_VALIDATOR_REFUSED /States/T/TimeoutSeconds"]);
    expect(codes(validateModel(model))).to.deep.equal(["ASL_VALIDATOR_REFUSED /States/T/TimeoutSeconds"]);
    throwsAslInvalid(() => validateModel(model, { strictness: "local" }));
  });
});

describe("awsRefusals: what AWS refuses, without asl-validator (V9)", function () {
  const cases: Array<[string, unknown]> = [
    ["a transition to no state", { StartAt: "A", States: { A: { Type: "Pass", Next: "Nowhere" } } }],
    ["no terminal state", { StartAt: "A", States: { A: { Type: "Pass", Next: "A" } } }],
    ["a state that is not an object", { StartAt: "A", States: { A: 5 } }],
    ["not an object", [1]],
    ["what only asl-validator refuses (a warning: AWS decides)", REFUSED_BY_ASL_VALIDATOR],
  ];

  it("refuses what checkDefinition's aws strictness refuses, and nothing else", function () {
    for (const [what, definition] of cases) {
      const expected = checkDefinition(definition, { strictness: "aws" })
        .errors.map((p) => p.code)
        .sort();
      const got = awsRefusals(definition)
        .map((p) => p.code)
        .sort();
      expect([...new Set(got)], what).to.deep.equal([...new Set(expected)]);
    }
  });

  it("does not load asl-validator (its schemas take a tenth of a second to compile)", function () {
    const validate = path.join(__dirname, "..", "..", "dist", "src", "model", "validate.js");
    if (!fs.existsSync(validate)) this.skip(); // `npm run build` writes it (npm test builds first)
    const script = `
      const { awsRefusals } = require(${JSON.stringify(validate)});
      const problems = awsRefusals({ StartAt: "A", States: { A: { Type: "Pass", Next: "Nowhere" } } });
      const loaded = Object.keys(require.cache).some((file) => file.includes("/asl-validator/"));
      process.stdout.write(JSON.stringify({ codes: problems.map((p) => p.code), loaded }));
    `;
    const result = JSON.parse(execFileSync(process.execPath, ["-e", script], { encoding: "utf8" })) as {
      codes: string[];
      loaded: boolean;
    };
    expect(result.codes).to.include("MISSING_TRANSITION_TARGET");
    expect(result.loaded).to.equal(false);
  });
});
