/**
 * False mismatches on genuine runs that the liar campaign found (F3, F4), fixed: each genuine run must be judged
 * a match by V9 as the pipeline runs it (the walk, then the replay).
 */
import { expect } from "chai";
import { replayRun } from "../../../src/verify/conformance/replay";
import { judge } from "./campaign";
import { recordRun } from "./harness";

const FIXED = [
  {
    id: "F3",
    title:
      "a recorded Task failure held back while a sibling branch runs into a failure of its own was replayed as aborted (the replay now also tries the schedule where the failure ends the Parallel at once)",
    definition: {
      StartAt: "P",
      States: {
        P: {
          Type: "Parallel",
          Branches: [
            {
              StartAt: "A",
              States: { A: { Type: "Task", Resource: "arn:aws:lambda:us-east-1:123456789012:function:a", End: true } },
            },
            {
              StartAt: "M",
              States: {
                M: {
                  Type: "Map",
                  ItemsPath: "$.items",
                  ItemProcessor: {
                    ProcessorConfig: { Mode: "INLINE" },
                    StartAt: "Q",
                    States: { Q: { Type: "Pass", OutputPath: "$.nope", End: true } },
                  },
                  End: true,
                },
              },
            },
          ],
          End: true,
        },
      },
    },
    input: { items: [1] },
    handlers: {
      A: (): never => {
        const error = new Error("a failed");
        error.name = "States.TaskFailed";
        throw error;
      },
    },
  },
];

describe("replay: genuine runs once refused (liar campaign findings F3, F4)", function () {
  for (const known of FIXED) {
    it(`${known.id}, fixed: ${known.title}`, async function () {
      const run = await recordRun(known.definition, known.input, known.handlers);
      // The genuine run: A failed before M's iteration ran, and the execution failed with A's error.
      expect(run.status).to.equal("failed");
      expect(run.states.map((data) => data.state_name)).to.have.members(["P", "M", "A", "$execution"]);
      expect(run.states[run.states.length - 1].outcome?.error?.error).to.equal("States.TaskFailed");
      expect((await replayRun(run)).kind).to.equal("match");
      expect((await judge(run)).verdict.kind).to.equal("match");
    });
  }

  it("F4, fixed: a caught Map failure that aborted a sibling's Task in flight records that attempt before the Catch target, and V9 accepts the run", async function () {
    const definition = {
      StartAt: "Each",
      States: {
        Each: {
          Type: "Map",
          ItemsPath: "$.items",
          ItemProcessor: {
            ProcessorConfig: { Mode: "INLINE" },
            StartAt: "Which",
            States: {
              Which: {
                Type: "Choice",
                Choices: [{ Variable: "$.fail", BooleanEquals: true, Next: "Boom" }],
                Default: "Work",
              },
              Boom: { Type: "Fail", Error: "Boom" },
              Work: { Type: "Task", Resource: "arn:aws:lambda:us-east-1:123456789012:function:work", End: true },
            },
          },
          Catch: [{ ErrorEquals: ["States.ALL"], ResultPath: "$.err", Next: "Done" }],
          Next: "Done",
        },
        Done: { Type: "Pass", End: true },
      },
    };
    const run = await recordRun(definition, { items: [{ fail: true }, { fail: false }] }, { Work: () => 1 });
    expect(run.status).to.equal("succeeded");
    const names = run.states.map((data) => data.state_name);
    expect(names.indexOf("Work"), "the aborted attempt is recorded before the Catch target").to.be.lessThan(
      names.indexOf("Done"),
    );
    expect(run.states.find((data) => data.state_name === "Work")?.outcome).to.equal(null);
    expect((await replayRun(run)).kind).to.equal("match");
    expect((await judge(run)).verdict.kind).to.equal("match");
  });
});
