/**
 * What the V9 attack tests (replay*.test.ts) share: forge a recorded run as a protocol whose hashes, chain and
 * signature all agree (V0–V8 pass), verify it with V9 on, and say what V9 must answer.
 */
import { expect } from "chai";
import { type StateContent } from "../../src/protocol/schema";
import { type ForgeEnv } from "../helpers/forge";
import { type RecordedRun } from "../verify/replay/harness";
import { forgeReplayable, verifyReplayable } from "../verify/replay/forge-replayable";

export type Checked = Awaited<ReturnType<typeof verifyReplayable>>;

export const clone = <T>(value: T): T => structuredClone(value);
export const LAMBDA = "arn:aws:lambda:us-east-1:123456789012:function:";

/** Forges `run` as a protocol and verifies it with V9 on. */
export async function judge(env: ForgeEnv, run: RecordedRun): Promise<Checked> {
  return verifyReplayable(env, await forgeReplayable(env, run));
}

/** V0–V8 passed (so only V9 stands between the lie and "valid"). */
export function expectCoherent(checked: Checked): void {
  for (const id of ["V0", "V1", "V3", "V4", "V5", "V6", "V7", "V8"]) {
    expect(checked.steps[id], `${id}: ${JSON.stringify(checked.report.steps.find((s) => s.id === id))}`).to.equal(
      "pass",
    );
  }
}

/** The lie is refused: V9 fails (or, where allowed, errs as not replayable) and the verdict is not valid. */
export function expectRefused(checked: Checked, how: "fail" | "fail-or-error" = "fail"): void {
  expectCoherent(checked);
  if (how === "fail") expect(checked.steps.V9, checked.v9).to.equal("fail");
  else expect(checked.steps.V9, checked.v9).to.be.oneOf(["fail", "error"]);
  expect(checked.report.verdict, checked.v9).to.not.equal("valid");
}

/** Not replayable: V9 errs (never passes) and the verdict is not valid. */
export function expectNotReplayable(checked: Checked): void {
  expectCoherent(checked);
  expect(checked.steps.V9, checked.v9).to.equal("error");
  expect(checked.v9).to.match(/can't be replayed/);
  expect(checked.report.verdict, checked.v9).to.not.equal("valid");
}

/** A genuine run must stay valid (the opposite defect). */
export function expectValid(checked: Checked): void {
  expectCoherent(checked);
  expect(checked.steps.V9, checked.v9).to.equal("pass");
  expect(checked.report.verdict, checked.v9).to.equal("valid");
}

/** Renumbers by position (what a coherent liar publishes); entry 0 keeps the Context Object. */
export function lie(run: RecordedRun, states: StateContent[], overrides: Partial<RecordedRun> = {}): RecordedRun {
  return {
    ...run,
    ...overrides,
    states: states.map((data, seq) => ({ ...data, seq, context: seq === 0 ? run.states[0].context : data.context })),
  };
}
