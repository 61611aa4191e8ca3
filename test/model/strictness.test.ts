import { expect } from "chai";
import { StatetrailError } from "../../src/errors";
import { loadModelFromBytes } from "../../src/model/load";
import { type AslProblem, checkDefinition, validateDefinition, validateModel } from "../../src/model/validate";

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
