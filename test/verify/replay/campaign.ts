/**
 * The liar campaign (used by liar.test.ts with a small fixed sample and by scripts/bench-replay.ts with ≥ 10,000
 * lies): fast-check generates models and inputs from the grammar, each model runs genuinely on the local engine
 * and must replay as "match"; then lies about the run (lies.ts) must replay as "mismatch" or "not-replayable",
 * and the variants a genuine run could also have produced must replay as "match". Nothing is timed.
 */
import fc from "fast-check";
import { checkConformance, conformanceEntryOf, type ConformanceEntry } from "../../../src/verify/conformance";
import { replayRun, type ReplayVerdict } from "../../../src/verify/conformance/replay";
import { compile, makeHandlers, scenarioArb } from "./grammar";
import { recordRun, type RecordedRun } from "./harness";
import { ALLOWED_KINDS, LIE_KINDS, makeVariant, picker, type AllowedKind, type LieKind } from "./lies";

export interface CampaignOptions {
  seed: number;
  /** Generated models (fast-check numRuns). */
  models: number;
  /** Variants tried per model. */
  variantsPerModel: number;
  /** Validate every generated model with the ASL validator first (slow: up to seconds per model). */
  validate: boolean;
  onProgress?: (stats: CampaignStats) => void;
}

export interface Problem {
  what: string;
  verdict: string;
  definition: unknown;
  input: unknown;
  /** The published claim (states abbreviated to what the replay compares). */
  claim?: unknown;
}

export interface CampaignStats {
  models: number;
  genuineRuns: number;
  genuineSucceeded: number;
  genuineFailed: number;
  genuineMatched: number;
  genuineEntries: number;
  /** Genuine runs V9 refused: false mismatches (those of a known, reported kind are listed apart). */
  falseMismatches: Problem[];
  liesTried: number;
  liesAccepted: Problem[];
  /** Per kind: tried, rejected (mismatch), not-replayable, accepted; benign and allowed variants too. */
  perKind: Record<
    string,
    { tried: number; mismatch: number; notReplayable: number; accepted: number; byWalkOnly: number }
  >;
  /** Lies the replay alone accepts (V9's walk refuses them): the replay trusts the protocol's status. */
  replayOnlyAccepted: Problem[];
  allowedTried: number;
  allowedRefused: Problem[];
  errors: Problem[];
}

/**
 * V9's judgment of a run, as src/verify/steps/v9-conformance.ts makes it from verified data: the walk (edges,
 * terminal state against the status), then the replay. `layer` says which one refused it.
 */
export async function judge(
  run: RecordedRun,
): Promise<{ verdict: ReplayVerdict; layer: "walk" | "replay"; replay: ReplayVerdict }> {
  const walk: ConformanceEntry[] = run.states.map((data) => conformanceEntryOf(data, null, false));
  const replay = await replayRun(run);
  const result = await checkConformance(run.definition, walk, run.status);
  if (result.violation)
    return {
      verdict: { kind: "mismatch", seq: null, message: result.violation.message, notes: [] },
      layer: "walk",
      replay,
    };
  return { verdict: replay, layer: "replay", replay };
}

function brief(run: RecordedRun): unknown {
  return {
    input: run.input,
    status: run.status,
    states: run.states.map((data) => [
      data.seq,
      data.state_name,
      data.state_type,
      data.iteration_path.map((step) => `${step.parent}#${step.index}`).join(">"),
      data.attempt,
      data.input,
      data.caught,
      data.outcome,
    ]),
  };
}

function describe(verdict: ReplayVerdict): string {
  return verdict.kind === "match" ? "match" : `${verdict.kind}: ${verdict.message}`;
}

export function emptyStats(): CampaignStats {
  return {
    models: 0,
    genuineRuns: 0,
    genuineSucceeded: 0,
    genuineFailed: 0,
    genuineMatched: 0,
    genuineEntries: 0,
    falseMismatches: [],
    liesTried: 0,
    liesAccepted: [],
    perKind: {},
    allowedTried: 0,
    allowedRefused: [],
    replayOnlyAccepted: [],
    errors: [],
  };
}

const ALL_KINDS: (LieKind | AllowedKind)[] = [...LIE_KINDS, ...ALLOWED_KINDS];

export async function runCampaign(options: CampaignOptions): Promise<CampaignStats> {
  const stats = emptyStats();
  const property = fc.asyncProperty(
    scenarioArb(),
    fc.array(fc.tuple(fc.constantFrom(...ALL_KINDS), fc.array(fc.nat(), { minLength: 8, maxLength: 8 })), {
      minLength: options.variantsPerModel,
      maxLength: options.variantsPerModel,
    }),
    async (scenario, plans) => {
      stats.models += 1;
      const model = compile(scenario.block);
      const handlers = (): ReturnType<typeof makeHandlers> => makeHandlers(model.handlers);
      let genuine: RecordedRun;
      try {
        genuine = await recordRun(model.definition, scenario.input, handlers(), { validate: options.validate });
      } catch (error) {
        stats.errors.push({
          what: `recording: ${(error as Error).message}`,
          verdict: "",
          definition: model.definition,
          input: scenario.input,
        });
        return true;
      }
      stats.genuineRuns += 1;
      stats.genuineEntries += genuine.states.length;
      if (genuine.status === "succeeded") stats.genuineSucceeded += 1;
      if (genuine.status === "failed") stats.genuineFailed += 1;
      const { verdict } = await judge(genuine);
      if (verdict.kind !== "match") {
        const problem = {
          what: "genuine run",
          verdict: describe(verdict),
          definition: model.definition,
          input: scenario.input,
          claim: brief(genuine),
        };
        stats.falseMismatches.push(problem);
        return true;
      }
      stats.genuineMatched += 1;
      for (const [kind, numbers] of plans) {
        let variant;
        try {
          variant = await makeVariant(kind, { genuine, handlers }, picker(numbers));
        } catch (error) {
          stats.errors.push({
            what: `${kind}: ${(error as Error).message}`,
            verdict: "",
            definition: model.definition,
            input: scenario.input,
          });
          continue;
        }
        if (!variant) continue;
        const label = variant.expect === "lie" ? variant.kind : `${variant.kind} (${variant.expect})`;
        const row = (stats.perKind[label] ??= { tried: 0, mismatch: 0, notReplayable: 0, accepted: 0, byWalkOnly: 0 });
        row.tried += 1;
        const judged = await judge(variant.run);
        const result = judged.verdict;
        if (result.kind === "mismatch") row.mismatch += 1;
        else if (result.kind === "not-replayable") row.notReplayable += 1;
        else row.accepted += 1;
        const problem = (): Problem => ({
          what: `${label}: ${variant.what}`,
          verdict: describe(result),
          definition: model.definition,
          input: scenario.input,
          claim: brief(variant.run),
        });
        if (variant.expect === "lie") {
          stats.liesTried += 1;
          if (result.kind === "match") stats.liesAccepted.push(problem());
          if (judged.replay.kind === "match" && result.kind !== "match") {
            row.byWalkOnly += 1;
            stats.replayOnlyAccepted.push({ ...problem(), verdict: `replay: match; walk: ${describe(result)}` });
          }
        } else {
          stats.allowedTried += 1;
          if (result.kind !== "match") stats.allowedRefused.push(problem());
        }
      }
      options.onProgress?.(stats);
      return true;
    },
  );
  await fc.assert(property, { seed: options.seed, numRuns: options.models, endOnFailure: true });
  return stats;
}
