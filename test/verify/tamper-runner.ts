/**
 * The one tamper runner. Every attack test is a row of a table: its name, the claim of the verifier it attacks,
 * the mutation (of the chain, the issuer's server or the protocol, on a forged scenario; it returns the URL of
 * the protocol to verify) and the steps that must fail. A new attack class is one row.
 *
 * For every row the runner takes a fresh scenario (or restores a shared one after the row), applies the mutation, verifies, and requires: verdict
 * invalid (exit 1); exactly the listed steps failing, in report order; the step of the attacked claim saying
 * what the row says; every other step passing (but the ones the setting does not judge, such as V2 without
 * ENS).
 */
import { expect } from "chai";
import { renderReport, type StepId, type VerificationReport } from "../../src/verify";
import { type InstanceProtocol } from "../../src/protocol/schema";
import { publish, resign, type ForgeEnv } from "../helpers/forge";

/** What a "valid" claims, one claim per step of the verifier. */
export const CLAIMS = {
  "the trusted chain and registries": "V0",
  "the issuer's origin": "V1",
  "the issuer's ENS name": "V2",
  "the issuer's certificate": "V3",
  "the registered model": "V4",
  "the instance, its issuer, model and input": "V5",
  "each state: data, registration, time, sender, link": "V6",
  "completeness: nothing withheld, reordered or added": "V7",
  "the issuer's signature": "V8",
  "conformance: the states are the model's run": "V9",
} as const satisfies Record<string, StepId>;
export type Claim = keyof typeof CLAIMS;

export interface Attack<S> {
  name: string;
  /** The claim the attack is aimed at: its step must fail and say `says`. */
  claim: Claim;
  /** Exactly the steps that must fail, in report order (the claim's step among them). */
  fails: StepId[];
  /** What the claim's step must say: matched against its problems (default), or its detail. */
  says: RegExp;
  in?: "problems" | "detail";
  /**
   * Tampers with a fresh scenario; returns the URL of the protocol to verify, and for a shared scenario what
   * undoes the tampering (run after the verification, whatever its outcome).
   */
  mutate: (scenario: S) => Promise<string | Tampered>;
}

export interface Tampered {
  url: string;
  restore: () => Promise<void>;
}

export interface AttackSetting<S> {
  /** A fresh scenario for each attack. */
  scenario: () => Promise<S>;
  verify: (scenario: S, url: string) => Promise<VerificationReport>;
  /** Steps this setting does not judge (neither required to pass nor to fail unless listed in `fails`). */
  unjudged: StepId[];
}

export function failing(report: VerificationReport): StepId[] {
  return report.steps.filter((step) => step.status === "fail").map((step) => step.id);
}

/** Asserts one attack's outcome on its report. */
export function expectCaught<S>(attack: Attack<S>, report: VerificationReport, unjudged: readonly StepId[]): void {
  const shown = JSON.stringify(report.steps, null, 2);
  const aimed = CLAIMS[attack.claim];
  expect(attack.fails, `${attack.name}: the claim's step ${aimed} must be among the failing steps`).to.include(aimed);
  expect(report.verdict, shown).to.equal("invalid");
  expect(report.exit_code).to.equal(1);
  expect(failing(report), shown).to.deep.equal(attack.fails);
  const step = report.steps.find((candidate) => candidate.id === aimed)!;
  const text = attack.in === "detail" ? step.detail : step.problems.join("\n");
  expect(text, renderReport(report)).to.match(attack.says);
  const others = report.steps.filter((other) => !attack.fails.includes(other.id) && !unjudged.includes(other.id));
  for (const other of others) expect(other.status, `${other.id}: ${other.detail}`).to.equal("pass");
}

/** Defines one mocha test per attack of the table. */
export function runAttacks<S>(setting: AttackSetting<S>, attacks: ReadonlyArray<Attack<S>>): void {
  for (const attack of attacks) {
    const aimed = CLAIMS[attack.claim];
    it(`detects: ${attack.name} (${aimed}; fails ${attack.fails.join(", ")})`, async function () {
      const scenario = await setting.scenario();
      const tampered = await attack.mutate(scenario);
      const { url, restore } = typeof tampered === "string" ? { url: tampered, restore: undefined } : tampered;
      let report: VerificationReport;
      try {
        report = await setting.verify(scenario, url);
      } finally {
        await restore?.();
      }
      if (process.env.SHOW_REPORTS) console.log(renderReport(report));
      expectCaught(attack, report, setting.unjudged);
    });
  }
}

/** A mutation that edits a copy of a genuine protocol, has the issuer sign it again and publishes it. */
export function editProtocol<S extends { env: ForgeEnv }>(
  pick: (scenario: S) => InstanceProtocol,
  change: (protocol: InstanceProtocol, scenario: S) => void | Promise<void>,
): (scenario: S) => Promise<string> {
  return async (scenario) => {
    const protocol = structuredClone(pick(scenario));
    await change(protocol, scenario);
    return publish(scenario.env.server, await resign(protocol, scenario.env.issuer));
  };
}

/** Renumbers and relinks the entries after an edit of their order, as a careful forger would. */
export function relink(protocol: InstanceProtocol): void {
  protocol.instance_protocol.forEach((entry, index, entries) => {
    entry.seq = index;
    entry.prev_state_hash = index === 0 ? protocol.instance_hash : entries[index - 1].state_hash;
  });
  const last = protocol.instance_protocol[protocol.instance_protocol.length - 1];
  protocol.head = { seq: last.seq, state_hash: last.state_hash };
}
