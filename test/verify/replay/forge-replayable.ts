/**
 * Forges protocol-version-2 instances of recorded runs (genuine, or lies) on the in-process Hardhat network, as a
 * dishonest issuer would publish them: model registered, instance created for the claimed execution input, every
 * state's data (with the recorded outcomes and Context Object) published, registered one transaction each,
 * terminated with the claimed status, the protocol signed by the issuer. Hashes, chain and signature agree, so
 * V0–V8 pass whatever the states say; only V9 judges them.
 */
import { loadFixture } from "@nomicfoundation/hardhat-toolbox/network-helpers";
import { sha256Hex } from "../../../src/chain/hash";
import { type InstanceStatus } from "../../../src/protocol/schema";
import { type VerificationReport } from "../../../src/verify";
import { deployForge, forgeRecordedRun, verifyForged, type ForgedState, type ForgeEnv } from "../../helpers/forge";
import { type RecordedRun } from "./harness";

/** The forge environment (registries, issuer certificate, memory server), reset through loadFixture. */
export async function replayEnv(): Promise<ForgeEnv> {
  const env = await loadFixture(deployForge);
  return { ...env, server: env.server.clone() };
}

/**
 * Publishes, registers (one transaction per state) and signs `run` (its definition, input, states and status)
 * as one instance, through the one forge helper.
 */
export async function forgeReplayable(env: ForgeEnv, run: RecordedRun): Promise<{ url: string }> {
  const bytes = Buffer.from(JSON.stringify(run.definition, null, 2));
  const states: ForgedState[] = run.states.map(
    ({ statetrail_state: _version, instance_hash: _instance, seq: _seq, ...state }) => state,
  );
  const status = run.status as Exclude<InstanceStatus, "running">;
  const forged = await forgeRecordedRun(env, { bytes, hash: sha256Hex(bytes) }, run.input, states, status, {
    perState: states.length,
  });
  return { url: forged.url };
}

/** Verifies a forged instance with V9 on; returns each step's status by id, and V9's detail. */
export async function verifyReplayable(
  env: ForgeEnv,
  forged: { url: string },
): Promise<{ report: VerificationReport; steps: Record<string, string>; v9: string }> {
  const report = await verifyForged(env, { url: forged.url }, { conformance: true });
  const steps = Object.fromEntries(report.steps.map((step) => [step.id, step.status]));
  const v9 = report.steps.find((step) => step.id === "V9")?.detail ?? "";
  return { report, steps, v9 };
}
