/**
 * Known failures of the replay found by the liar campaign and reported to the lead (.liar-findings.md), asserted
 * to still fail: when one is fixed, its test here fails, and it moves to regression.test.ts as a plain test.
 */
import { expect } from "chai";
import { replayRun } from "../../../src/verify/conformance/replay";
import { judge } from "./campaign";
import { recordRun } from "./harness";

const KNOWN_FAILURES = [
  {
    id: "F3",
    title:
      "false mismatch: a recorded Task failure is held back while a sibling branch runs into a failure of its own, which aborts the Task",
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

describe("replay: known failures (reported, not fixed yet)", function () {
  for (const known of KNOWN_FAILURES) {
    it(`${known.id} still fails: ${known.title}`, async function () {
      const run = await recordRun(known.definition, known.input, known.handlers);
      // The genuine run: A failed before M's iteration ran, and the execution failed with A's error.
      expect(run.status).to.equal("failed");
      expect(run.states.map((data) => data.state_name)).to.have.members(["P", "M", "A", "$execution"]);
      expect(run.states[run.states.length - 1].outcome?.error?.error).to.equal("States.TaskFailed");
      const verdict = await replayRun(run);
      expect(verdict.kind, "fixed? move this case to regression.test.ts").to.equal("mismatch");
    });
  }

  it("F4 still fails: V9's walk refuses a genuine run whose caught Map failure aborted a sibling's Task in flight (recorded after the Catch target)", async function () {
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
    expect(names.indexOf("Work"), "the aborted attempt is recorded after the Catch target").to.be.greaterThan(
      names.indexOf("Done"),
    );
    expect((await replayRun(run)).kind, "the replay alone matches").to.equal("match");
    const judged = await judge(run);
    expect(judged.layer).to.equal("walk");
    expect(judged.verdict.kind, "fixed? move this case to regression.test.ts").to.equal("mismatch");
  });
});
