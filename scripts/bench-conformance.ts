/**
 * Benchmark: the time conformance (V9) adds to verifying a 10,000-state run.
 *
 *   npx hardhat run scripts/bench-conformance.ts            # in-process chain
 *   BENCH_ITERATIONS=3332 BENCH_ROUNDS=3 npx hardhat run scripts/bench-conformance.ts
 *
 * A genuine run is made with the local engine: a Map over BENCH_ITERATIONS items (default 3,332), each
 * iteration a Task, a Choice and one of two Pass states, between four top-level states — 10,000 states
 * and the end entry. Its states are registered on the in-process chain in registerStates batches of 500,
 * published in memory (test/helpers/forge.ts, the one forge helper: no network), and the protocol is verified BENCH_ROUNDS times with
 * conformance on and off (alternating, after a warm-up of each). Printed, and returned as JSON on the last
 * line (medians): V9's own step time — the time conformance adds, since V9 is the only extra work (V6 merely
 * keeps the state data it already parsed) — with its cost per state; the walker alone (checkConformance on
 * state data in memory); the replay alone (replayRun); and the whole verification with and without V9, whose difference is within the
 * noise of a ~6 s verification on a shared machine.
 */
import { LocalEngine } from "../src/engine/local";
import { type EngineEvent } from "../src/engine/types";
import { loadModelFromBytes } from "../src/model/load";
import { type InstanceStatus } from "../src/protocol/schema";
import { type VerificationReport } from "../src/verify";
import { checkConformance } from "../src/verify/conformance";
import { replayRun } from "../src/verify/conformance/replay";
import { deployForge, forgeRecordedRun, recordedStates, verifyForged } from "../test/helpers/forge";
import { conformanceEntry } from "../test/verify/conformance/helpers";

const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 3332);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const BATCH = 500;

const MODEL = {
  Comment: "conformance benchmark: a Map of Task → Choice → Pass iterations between four top-level states",
  StartAt: "Load",
  States: {
    Load: { Type: "Pass", Next: "Score each" },
    "Score each": {
      Type: "Map",
      ItemsPath: "$.items",
      MaxConcurrency: 8,
      ItemSelector: { "id.$": "$$.Map.Item.Value" },
      ItemProcessor: {
        StartAt: "Score",
        States: {
          Score: { Type: "Task", Resource: "arn:aws:lambda:us-east-1:123456789012:function:score", Next: "Route" },
          Route: {
            Type: "Choice",
            Choices: [{ Variable: "$.score", NumericGreaterThanEquals: 50, Next: "High" }],
            Default: "Low",
          },
          High: { Type: "Pass", Result: "high", ResultPath: "$.band", End: true },
          Low: { Type: "Pass", Result: "low", ResultPath: "$.band", End: true },
        },
      },
      ResultPath: "$.scored",
      Next: "Summarise",
    },
    Summarise: { Type: "Pass", Parameters: { "count.$": "States.ArrayLength($.scored)" }, Next: "Done" },
    Done: { Type: "Succeed" },
  },
};

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function stepMs(report: VerificationReport, id: string): number {
  return report.steps.find((step) => step.id === id)?.durationMs ?? 0;
}

async function main(): Promise<void> {
  const model = loadModelFromBytes(Buffer.from(JSON.stringify(MODEL, null, 2)));
  const input = { items: Array.from({ length: ITERATIONS }, (_, i) => i + 1) };

  let started = performance.now();
  const engine = new LocalEngine({
    handlers: { Score: (item) => ({ ...(item as object), score: ((item as { id: number }).id * 37) % 100 }) },
    maxSteps: 4 * ITERATIONS + 100,
  });
  const events: EngineEvent[] = [];
  for await (const event of engine.run(model, { input, executionName: "bench" })) events.push(event);
  const runMs = performance.now() - started;
  const end = events[events.length - 1];
  if (end.kind !== "end" || end.status !== "succeeded") throw new Error("the benchmark run did not succeed");
  const status: InstanceStatus = "succeeded";

  // Forge the genuine run on the in-process chain (the one forge helper: registerStates batches of 500).
  started = performance.now();
  const env = await deployForge();
  const states = recordedStates(events);
  const forged = await forgeRecordedRun(env, model, input, states, status, { perState: 0, batch: BATCH });
  const { url } = forged;
  const entries = forged.protocol.instance_protocol;
  const forgeMs = performance.now() - started;

  // Verify with and without conformance, alternating, after one warm-up of each (not counted).
  for (const conformance of [true, false]) await verifyForged(env, { url }, { conformance });
  const withV9: number[] = [];
  const withoutV9: number[] = [];
  const v9Step: number[] = [];
  const v6Step = { with: [] as number[], without: [] as number[] };
  let detail = "";
  for (let round = 0; round < ROUNDS; round++) {
    for (const conformance of [true, false]) {
      started = performance.now();
      const report = await verifyForged(env, { url }, { conformance });
      const ms = performance.now() - started;
      if (report.verdict !== "valid") {
        throw new Error(
          `verification was ${report.verdict}: ${JSON.stringify(report.steps.filter((s) => s.status !== "pass"))}`,
        );
      }
      v6Step[conformance ? "with" : "without"].push(stepMs(report, "V6"));
      if (conformance) {
        withV9.push(ms);
        v9Step.push(stepMs(report, "V9"));
        detail = report.steps.find((step) => step.id === "V9")!.detail;
      } else {
        withoutV9.push(ms);
      }
    }
  }

  // The walker alone, on data already in memory.
  const walker: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    started = performance.now();
    const result = await checkConformance(
      model.definition,
      forged.stateData.map((data, i) => conformanceEntry(data, entries[i].timestamp, false)),
      status,
    );
    walker.push(performance.now() - started);
    if (result.violation) throw new Error(result.violation.message);
  }

  // The replay alone, on data already in memory.
  const replay: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    started = performance.now();
    const result = await replayRun({ definition: model.definition, input, states: forged.stateData, status });
    replay.push(performance.now() - started);
    if (result.kind !== "match") throw new Error(`replay: ${result.message}`);
  }

  const figures = {
    states: states.length - 1,
    entries: states.length,
    rounds: ROUNDS,
    engine_run_ms: Math.round(runMs),
    forge_ms: Math.round(forgeMs),
    verify_with_conformance_ms: Math.round(median(withV9)),
    verify_without_conformance_ms: Math.round(median(withoutV9)),
    conformance_adds_ms: Math.round(median(v9Step)),
    conformance_us_per_state: Math.round((median(v9Step) * 1000) / (states.length - 1)),
    end_to_end_difference_ms: Math.round(median(withV9) - median(withoutV9)),
    v6_keeping_state_data_ms: Math.round(median(v6Step.with)),
    v6_not_keeping_ms: Math.round(median(v6Step.without)),
    walker_only_ms: Math.round(median(walker)),
    replay_only_ms: Math.round(median(replay)),
  };
  console.log(`conformance benchmark: ${figures.states} states + end entry (${ROUNDS} rounds, medians)`);
  console.log(`  local engine run                     ${figures.engine_run_ms} ms`);
  console.log(`  forge on the in-process chain        ${figures.forge_ms} ms`);
  console.log(
    `  conformance adds (V9 step)           ${figures.conformance_adds_ms} ms (${figures.conformance_us_per_state} µs/state)`,
  );
  console.log(`  walker alone (data in memory)        ${figures.walker_only_ms} ms`);
  console.log(`  replay alone (data in memory)        ${figures.replay_only_ms} ms`);
  console.log(`  verify V0–V9                         ${figures.verify_with_conformance_ms} ms`);
  console.log(`  verify V0–V8 (--no-conformance)      ${figures.verify_without_conformance_ms} ms`);
  console.log(`  difference of the two (noisy)        ${figures.end_to_end_difference_ms} ms`);
  console.log(
    `  V6 keeping / not keeping state data  ${figures.v6_keeping_state_data_ms} / ${figures.v6_not_keeping_ms} ms`,
  );
  console.log(`  V9: ${detail}`);
  console.log(JSON.stringify(figures));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
