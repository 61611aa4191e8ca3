/**
 * Attacks on entry 0's Context Object, which the replay feeds to the model: a liar who re-registers and re-signs
 * everything changes `$$` to steer a decision, and the replay must refuse it.
 */
import { expect } from "chai";
import { replayRun } from "../../../src/verify/conformance/replay";
import { type StateContent } from "../../../src/protocol/schema";
import { recordRun, type RecordedRun } from "./harness";

// A Choice on the execution's start time: a start time chosen afterwards would pick the branch.
const EARLY_BIRD = {
  StartAt: "Early?",
  States: {
    "Early?": {
      Type: "Choice",
      Choices: [{ Variable: "$$.Execution.StartTime", TimestampLessThan: "2000-01-01T00:00:00Z", Next: "Discount" }],
      Default: "Full price",
    },
    Discount: { Type: "Succeed" },
    "Full price": { Type: "Succeed" },
  },
};

function withContext(run: RecordedRun, change: (context: Record<string, unknown>, states: StateContent[]) => void) {
  const states = structuredClone(run.states);
  change(states[0].context as Record<string, unknown>, states);
  return { ...run, states };
}

describe("replay: attacks on the recorded Context Object", function () {
  let run: RecordedRun;
  let startedAt: number;

  before(async function () {
    run = await recordRun(EARLY_BIRD, { order: 1 }, undefined);
    startedAt = Date.parse((run.states[0].context as { Execution: { StartTime: string } }).Execution.StartTime) / 1000;
  });

  it("accepts the genuine run, inside its start window", async function () {
    expect(run.states.map((s) => s.state_name)).to.include("Full price");
    const verdict = await replayRun({ ...run, startWindow: { from: startedAt - 10, to: startedAt + 10 } });
    expect(verdict.kind).to.equal("match");
  });

  it("refuses a start time moved before the instance's creation, even where the replay then agrees", async function () {
    // The lie is coherent: the Choice's branch follows the forged start time, so only the window can tell.
    const forged = withContext(run, (context, states) => {
      (context.Execution as { StartTime: string }).StartTime = "1999-06-01T00:00:00.000Z";
      const choice = states.findIndex((s) => s.state_name === "Full price");
      states[choice].state_name = "Discount";
    });
    expect((await replayRun(forged)).kind, "without a window the lie replays").to.equal("match");
    const verdict = await replayRun({ ...forged, startWindow: { from: startedAt - 10, to: startedAt + 10 } });
    expect(verdict.kind).to.equal("mismatch");
    expect(verdict.kind === "mismatch" && verdict.message).to.match(/before the instance was created/);
  });

  it("refuses a start time after entry 0 was registered", async function () {
    const forged = withContext(run, (context) => {
      (context.Execution as { StartTime: string }).StartTime = new Date((startedAt + 3_600) * 1000).toISOString();
    });
    const verdict = await replayRun({ ...forged, startWindow: { from: startedAt - 10, to: startedAt + 10 } });
    expect(verdict.kind === "mismatch" && verdict.message).to.match(/after entry 0 was registered/);
  });

  it("refuses a Context Object naming another execution input than the verified one", async function () {
    const forged = withContext(run, (context) => {
      (context.Execution as { Input: unknown }).Input = { order: 2 };
    });
    const verdict = await replayRun(forged);
    expect(verdict.kind === "mismatch" && verdict.message).to.match(/another execution input/);
  });

  it("refuses a Context Object with fields no engine gives (they would reach the model as $$)", async function () {
    const forged = withContext(run, (context) => {
      context.Map = { Item: { Index: 7, Value: "forged" } };
    });
    const verdict = await replayRun(forged);
    expect(verdict.kind === "mismatch" && verdict.message).to.match(/not the one an engine gives/);
  });

  it("refuses a missing Context Object, and one recorded on a later entry", async function () {
    const missing = withContext(run, (_context, states) => (states[0].context = null));
    expect((await replayRun(missing)).kind).to.equal("mismatch");
    const later = withContext(run, (context, states) => (states[1].context = structuredClone(context)));
    const verdict = await replayRun(later);
    expect(verdict.kind === "mismatch" && verdict.message).to.match(/only entry 0 may/);
  });
});
