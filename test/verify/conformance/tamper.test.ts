import fs from "node:fs";
import { expect } from "chai";
import { type InstanceStatus } from "../../../src/protocol/schema";
import { renderReport, type StepResult, type VerificationReport } from "../../../src/verify";
import { verifyForged, type ForgeEnv } from "../../helpers/forge";
import { runAttacks, type Attack } from "../tamper-runner";
import { conformanceEnv, forgeRecorded, verifyRecorded } from "./forge-recorded";
import { example, runLocal, type LocalRun, type RecordedState } from "./helpers";

type Status = Exclude<InstanceStatus, "running">;

const ORDER_INPUT = JSON.parse(fs.readFileSync(example("order-fulfilment.input.json"), "utf8")) as unknown;

async function orderRun(): Promise<LocalRun> {
  // A fresh outage counter per run: the handler module counts outages per order id.
  const input = { ...(ORDER_INPUT as object), orderId: `o-${Math.random().toString(36).slice(2, 8)}` };
  return runLocal(example("order-fulfilment.asl.json"), input, {
    handlersModule: example("order-fulfilment.handlers.js"),
  });
}

function statuses(report: VerificationReport): string[] {
  return report.steps.map((step) => `${step.id}:${step.status}`);
}

function v9(report: VerificationReport): StepResult {
  return report.steps.find((step) => step.id === "V9")!;
}

/** Forges what an issuer lying coherently would publish: `edit` rewrites the recorded states. */
async function forgeEdited(
  env: ForgeEnv,
  run: LocalRun,
  edit: (states: RecordedState[]) => RecordedState[],
  status: Status = run.status as Status,
): Promise<string> {
  const recorded = await forgeRecorded(env, run.model, run.input, edit(structuredClone(run.states)), status);
  return recorded.url;
}

function indexOf(states: RecordedState[], name: string): number {
  const index = states.findIndex((state) => state.state_name === name);
  if (index < 0) throw new Error(`no state ${name} recorded`);
  return index;
}

async function refundRun(): Promise<LocalRun> {
  const run = await runLocal(
    example("refund-request.asl.json"),
    JSON.parse(fs.readFileSync(example("refund-request.input.json"), "utf8")) as unknown,
    { handlersModule: example("refund-request.handlers.js") },
  );
  expect(run.status).to.equal("failed");
  return run;
}

async function batchRun(): Promise<LocalRun> {
  return runLocal(
    example("batch-scoring.asl.json"),
    { batchId: "b-tamper" },
    { handlersModule: example("batch-scoring.handlers.js") },
  );
}

/** A coherent lie about a recorded run: V0–V8 pass, only V9 fails, its detail naming the state. */
function lie(
  name: string,
  run: () => Promise<LocalRun>,
  edit: (states: RecordedState[]) => RecordedState[],
  says: RegExp,
  status?: Status,
): Attack<{ env: ForgeEnv }> {
  return {
    name,
    claim: "conformance: the states are the model's run",
    fails: ["V9"],
    says,
    in: "detail",
    mutate: async ({ env }) => {
      const recorded = await run();
      return forgeEdited(env, recorded, edit, status ?? (recorded.status as Status));
    },
  };
}

const LIES: Array<Attack<{ env: ForgeEnv }>> = [
  lie(
    "a state the model doesn't contain",
    orderRun,
    (states) => {
      states[indexOf(states, "Ship")].state_name = "Ship express";
      return states;
    },
    /^seq 14 "Ship express": the model has no state "Ship express"; expected "Ship" \(Next\), recorded "Ship express" \(Task\)$/,
  ),
  lie(
    "a skipped state",
    orderRun,
    (states) => {
      states.splice(indexOf(states, "Ship"), 1);
      return states;
    },
    /^seq 14 "Done": "Fulfil" → "Done" is not an edge of the model; expected "Ship" \(Next\), recorded "Done" \(Succeed\)$/,
  ),
  // The card path replaced by the invoice path: every transition is an edge of the model, but the recorded
  // input of "Payment method?" says card.
  lie(
    "a Choice branch that contradicts the Choice's recorded input",
    orderRun,
    (states) => {
      const charge = states[indexOf(states, "Charge card")];
      charge.state_name = "Wait for credit check";
      charge.state_type = "Wait";
      return states;
    },
    /^seq 3 "Wait for credit check": Choice "Payment method\?" \(seq 2\) re-evaluated on its recorded input selects "Charge card" \(Default\); expected "Charge card" \(Default\), recorded "Wait for credit check" \(Wait\)$/,
  ),
  lie(
    "a Map with one iteration missing",
    batchRun,
    (states) =>
      states.filter((state) => !state.iteration_path.some((step) => step.parent === "Score each" && step.index === 23)),
    /^seq 71 "Summarise": "Score each" \(seq 1\) left through its Next, but Map "Score each" ran 23 iterations and its recorded input has 24 items \(iteration 23 missing\)$/,
  ),
  lie(
    "a run ending in a non-terminal state",
    orderRun,
    (states) => {
      states.splice(indexOf(states, "Done"), 1);
      return states;
    },
    /^seq 15 "\$execution": the run ended in "Ship" \(seq 14, Task\), which is not a terminal state; expected "Done" \(Next\), recorded the execution's end \(ExecutionSucceeded\)$/,
  ),
  lie(
    "a `succeeded` status on a run that ended in Fail",
    refundRun,
    (states) => {
      const end = states[states.length - 1];
      end.state_type = "ExecutionSucceeded";
      end.outcome = { result: null };
      return states;
    },
    /^seq 3 "\$execution": status succeeded, but the run ended in Fail state "Refund refused" \(seq 2, Fail\); expected ExecutionFailed \(status failed\), recorded ExecutionSucceeded \(status succeeded\)$/,
    "succeeded",
  ),
  // Caught only by the replay: every transition is an edge and every Choice decision follows its recorded input.
  lie(
    "a state's recorded input that the previous state's output does not make (the Choice's input edited)",
    orderRun,
    (states) => {
      const choice = states[indexOf(states, "Payment method?")];
      choice.input = { ...(choice.input as object), amount: 10 };
      return states;
    },
    /^the replay of the model disagrees with the protocol: seq 2 \(top level\): "Payment method\?" is entered with input \{"customer".* in the replay, the protocol records \{"amount":10,/,
  ),
  lie(
    "a Task outcome that the next state's recorded input contradicts",
    orderRun,
    (states) => {
      const charge = states[indexOf(states, "Charge card")];
      charge.outcome = { result: { charged: false, forged: true } };
      return states;
    },
    /^the replay of the model disagrees with the protocol: seq 4 \(top level\): "Fulfil" is entered with input \{"charge":\{"charged":false,"forged":true\}.* in the replay, the protocol records \{"charge":\{"amount":80,/,
  ),
];

describe("V9 conformance against coherent lies (hashes, chain and signature consistent)", function () {
  this.timeout(60_000);

  it("passes every step of a genuine recorded run: V0–V9 valid, the walk and the replay", async function () {
    const env = await conformanceEnv();
    const url = await forgeEdited(env, await orderRun(), (states) => states);
    const report = await verifyRecorded(env, { url });
    expect(statuses(report), renderReport(report)).to.deep.equal([
      "V0:pass",
      "V1:pass",
      "V2:skip",
      "V3:pass",
      "V4:pass",
      "V5:pass",
      "V6:pass",
      "V7:pass",
      "V8:pass",
      "V9:pass",
    ]);
    expect(report.verdict).to.equal("valid");
    expect(v9(report).detail)
      .to.contain("16 states follow the model's edges")
      .and.contain("1 retry")
      .and.match(/replayed from the verified input: 17 entries and \d+ Task outcomes? agree/);
  });

  runAttacks<{ env: ForgeEnv }>(
    {
      scenario: async () => ({ env: await conformanceEnv() }),
      verify: ({ env }, url) => verifyRecorded(env, { url }),
      unjudged: ["V2"],
    },
    LIES,
  );

  it("is skipped and optional with conformance off, so the lie is not seen (--no-conformance)", async function () {
    const run = await orderRun();
    const env = await conformanceEnv();
    const states = structuredClone(run.states);
    states.splice(indexOf(states, "Ship"), 1);
    const recorded = await forgeRecorded(env, run.model, run.input, states, "succeeded");
    const report = await verifyForged(env, { url: recorded.url }, { conformance: false });
    expect(v9(report)).to.include({ status: "skip", detail: "not requested (--no-conformance)", required: false });
    expect(report.verdict).to.equal("valid");
  });

  it("is skipped when V4 could not verify the model bytes", async function () {
    const run = await orderRun();
    const env = await conformanceEnv();
    const recorded = await forgeRecorded(env, run.model, run.input, run.states, "succeeded");
    env.server.serve(recorded.protocol.model_data, Buffer.concat([run.model.bytes, Buffer.from("\n")]));
    const report = await verifyRecorded(env, recorded);
    expect(report.steps.find((step) => step.id === "V4")!.status).to.equal("fail");
    expect(v9(report)).to.include({ status: "skip", detail: "the model bytes were not verified (see V4)" });
  });

  // V0 and V2–V8 run at once; V9 replays from what V4 (the model), V5 (the input) and the pass verified, so it must
  // wait for them however late their answers come.
  it("replays after V4, V5 and the pass, even when the model and input documents answer last", async function () {
    const run = await orderRun();
    const env = await conformanceEnv();
    const recorded = await forgeRecorded(env, run.model, run.input, run.states, "succeeded");
    const late = new Set([recorded.protocol.model_data, recorded.protocol.instance_data]);
    const served = env.server.fetcher;
    const report = await verifyForged(
      env,
      { url: recorded.url },
      {
        conformance: true,
        fetcher: async (url, request) => {
          if (late.has(url)) await new Promise((resolve) => setTimeout(resolve, 300));
          return served(url, request);
        },
      },
    );
    expect(statuses(report), renderReport(report)).to.include.members(["V4:pass", "V5:pass", "V9:pass"]);
    expect(report.verdict).to.equal("valid");
  });

  it("never passes a run it could not replay whole: state data beyond the keep budget makes V9 err (could not verify)", async function () {
    const run = await orderRun();
    const env = await conformanceEnv();
    const recorded = await forgeRecorded(env, run.model, run.input, run.states, "succeeded");
    // A budget for a few states only: the pass keeps what fits and counts the rest.
    const report = await verifyForged(env, { url: recorded.url }, { conformance: true, keptStateBytes: 4_000 });
    expect(statuses(report), renderReport(report)).to.deep.equal([
      "V0:pass",
      "V1:pass",
      "V2:skip",
      "V3:pass",
      "V4:pass",
      "V5:pass",
      "V6:pass",
      "V7:pass",
      "V8:pass",
      "V9:error",
    ]);
    expect(report.verdict).to.equal("could-not-verify");
    expect(v9(report).detail).to.match(
      /of 17 states exceed the 0.004 MiB the verifier keeps for the replay, so the run was not replayed/,
    );
    // With the default budget the same run is replayed and valid.
    const whole = await verifyRecorded(env, recorded);
    expect(whole.verdict, renderReport(whole)).to.equal("valid");
  });

  it("never replays an input that names a member twice: readers disagree on it, so V9 errs (could not verify)", async function () {
    const run = await orderRun();
    const env = await conformanceEnv();
    // A decoy first: JSON.parse (and so the recorded states) keeps the last "orderId", a first-wins reader the decoy.
    const canonical = JSON.stringify(run.input);
    const bytes = Buffer.from(`{"orderId":"o-decoy",${canonical.slice(1)}`);
    expect(JSON.parse(bytes.toString())).to.deep.equal(run.input);
    const recorded = await forgeRecorded(env, run.model, bytes, run.states, "succeeded");
    const report = await verifyRecorded(env, recorded);
    expect(statuses(report), renderReport(report)).to.include("V5:pass").and.include("V9:error");
    expect(report.verdict).to.equal("could-not-verify");
    expect(v9(report)).to.include({ code: "NOT_REPLAYABLE" });
    expect(v9(report).detail).to.match(/can't be replayed unambiguously: the execution input: duplicate key "orderId"/);
  });

  it("fails an input document that is not UTF-8: a lenient decoder would read another input", async function () {
    const run = await orderRun();
    const env = await conformanceEnv();
    // The input sealed with U+FFFD in a string, its document served with an invalid byte there instead: a lenient
    // decoder reads U+FFFD (and the digest would match), a strict one refuses the document.
    const input = { ...(run.input as object), note: "\ufffd" };
    const recorded = await forgeRecorded(env, run.model, input, run.states, "succeeded");
    const document = env.server.bytes(recorded.protocol.instance_data)!;
    const replacement = Buffer.from("\ufffd", "utf8");
    const at = document.indexOf(replacement);
    expect(at).to.be.greaterThan(0);
    const invalid = Buffer.concat([document.subarray(0, at), Buffer.from([0xff]), document.subarray(at + 3)]);
    env.server.serve(recorded.protocol.instance_data, invalid);
    const report = await verifyRecorded(env, recorded);
    expect(statuses(report), renderReport(report)).to.include("V5:fail");
    expect(report.verdict).to.equal("invalid");
    expect(report.steps.find((step) => step.id === "V5")!.detail).to.match(/UTF-8/);
  });
});
