/**
 * Protocols of recorded runs, kept for older imports: the one forge helper is test/helpers/forge.ts
 * (forgeRecordedRun, forgeEnv). Hashes, chain and signature agree, so V0–V8 pass whatever the states say;
 * only conformance (V9) judges them.
 */
import { type LoadedModel } from "../../../src/model/types";
import { type InstanceStatus } from "../../../src/protocol/schema";
import { type VerificationReport } from "../../../src/verify";
import { forgeEnv, forgeRecordedRun, verifyForged, type ForgeEnv, type ForgedRun } from "../../helpers/forge";
import { type RecordedState } from "./helpers";

/** The forge environment (registries, issuer certificate, memory server), reset through loadFixture. */
export const conformanceEnv = forgeEnv;

export type RecordedProtocol = Pick<ForgedRun, "protocol" | "url">;

/** Forges the protocol of `states` (renumbered by position), registered one per transaction (see forgeRecordedRun). */
export function forgeRecorded(
  env: ForgeEnv,
  model: LoadedModel,
  input: unknown,
  states: readonly RecordedState[],
  status: Exclude<InstanceStatus, "running">,
): Promise<RecordedProtocol> {
  return forgeRecordedRun(env, model, input, states, status);
}

/** Verifies a forged recorded protocol with conformance on. */
export function verifyRecorded(env: ForgeEnv, recorded: Pick<RecordedProtocol, "url">): Promise<VerificationReport> {
  return verifyForged(env, { url: recorded.url }, { conformance: true });
}
