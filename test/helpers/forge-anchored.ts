/**
 * Merkle-anchored runs (`--anchor batch`), kept for older imports: the one forge helper is ./forge.ts
 * (startRun / anchorRuns / finishRun, forgeAnchoredScenario). Import from there in new code.
 */
import { type LeafBatch, type LeafFields } from "../../src/protocol/anchoring";
import {
  anchorLeaves,
  anchorRuns,
  finishRun,
  startAnchored,
  type ForgeEnv,
  type ForgedRun,
  type Location,
  type PendingRun,
} from "./forge";

export { forgeAnchoredScenario, type AnchoredScenario } from "./forge";

export type AnchoredRun = ForgedRun;
export type Pending = PendingRun;

/** Creates an instance with `count` states (the last its succeeded end) and publishes their data. */
export function start(env: ForgeEnv, label: string, count: number): Promise<PendingRun> {
  return startAnchored(env, label, count);
}

/** Anchors one root over the given states of the given instances (in that order). */
export function anchor(env: ForgeEnv, parts: Array<{ run: PendingRun; from: number; to: number }>): Promise<void> {
  return anchorRuns(env, parts);
}

/** Terminates (terminateAnchored) when `terminate`, and publishes the signed protocol. */
export function finish(env: ForgeEnv, run: PendingRun, terminate: boolean): Promise<ForgedRun> {
  return finishRun(env, run, { terminate });
}

/** Anchors `leaves` of the issuer in a root of their own (a root the issuer really anchored). */
export function anchorExtra(env: ForgeEnv, leaves: LeafFields[]): Promise<{ batch: LeafBatch; at: Location }> {
  return anchorLeaves(env, leaves);
}
