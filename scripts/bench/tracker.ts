import fs from "node:fs";
import path from "node:path";
import { createEngine } from "../../src/engine";
import { type Engine, type EngineEvent } from "../../src/engine/types";
import { loadModel } from "../../src/model/load";
import { type LoadedModel } from "../../src/model/types";
import { type AnchorMode } from "../../src/tracker/journal";
import { type TestIssuer } from "../../test/helpers/issuer";
import { ROOT, counter, type Progress } from "./common";

export const BENCH_MODEL = path.join(ROOT, "examples", "bench-map-1000.asl.json");
export const BENCH_INPUT = path.join(ROOT, "examples", "bench-map-1000.input.json");

export interface ThroughputRow {
  mode: AnchorMode;
  /** `local`: aws-local-stepfunctions runs the model; `replay`: its recorded events, as fast as they are read. */
  engine: "local" | "replay";
  max_in_flight: number;
  states: number;
  /** From the first state entered to the last state final (in the protocol). */
  seconds: number;
  states_per_second: number;
  /** The whole `tracker.run`: checks, model and instance registration, the states, termination, publication. */
  wall_seconds: number;
  /** Transactions that carried the states. */
  transactions: number;
  /** Runs made; the median (by states per second) is reported. */
  runs?: number;
  verdict?: string;
}

export interface OverheadRow {
  mode: AnchorMode | "untracked";
  max_in_flight: number | null;
  wall_seconds: number;
  /** wall_seconds divided by the untracked run's. */
  factor: number;
}

export interface TrackerResults {
  model: string;
  untracked_seconds: number;
  engine_states_per_second: number;
  rows: ThroughputRow[];
  overhead: OverheadRow[];
}

function localEngine(): Engine {
  return createEngine({ engine: "local", taskHandler: "echo", skipWaits: true, maxSteps: 100_000 });
}

/** An engine that yields the recorded events of a run (the engine's own cost taken out of the measurement). */
function replayEngine(events: readonly EngineEvent[]): Engine {
  return {
    name: "local",
    prepare: async () => undefined,
    async *run() {
      yield* events;
    },
  };
}

async function untracked(model: LoadedModel, input: unknown): Promise<{ seconds: number; events: EngineEvent[] }> {
  const engine = localEngine();
  await engine.prepare(model);
  const started = performance.now();
  const events: EngineEvent[] = [];
  for await (const event of engine.run(model, { input, executionName: "untracked" })) events.push(event);
  return { seconds: (performance.now() - started) / 1000, events };
}

/**
 * Tracker throughput (states registered per second) per anchoring mode on a `hardhat node` process with
 * automine, for a model with a 1,000-iteration Map run by the local engine (echo Task handler, waits skipped);
 * and the overhead of tracking: the same run's wall time with and without tracking.
 */
export async function measureTracker(issuer: TestIssuer, progress: Progress): Promise<TrackerResults> {
  const model = await loadModel(BENCH_MODEL);
  const inputBytes = fs.readFileSync(BENCH_INPUT);
  const input = JSON.parse(inputBytes.toString("utf8")) as unknown;

  progress.set("tracker: untracked runs of the 1,000-iteration Map (warm-up, then measured)");
  await untracked(model, input);
  const plain = await untracked(model, input);
  const states = plain.events.length;

  const configurations: Array<
    Omit<ThroughputRow, "states" | "seconds" | "states_per_second" | "wall_seconds" | "transactions">
  > = [
    { mode: "per-state", engine: "local", max_in_flight: 1 },
    { mode: "per-state", engine: "local", max_in_flight: 16 },
    { mode: "multi", engine: "local", max_in_flight: 16 },
    { mode: "batch", engine: "local", max_in_flight: 16 },
    { mode: "per-state", engine: "replay", max_in_flight: 16 },
    { mode: "multi", engine: "replay", max_in_flight: 16 },
    { mode: "batch", engine: "replay", max_in_flight: 16 },
  ];
  const rows: ThroughputRow[] = [];
  for (const configuration of configurations) {
    // Runs of a second or so are measured three times (the median is kept): the first one also warms up code.
    const repeats = configuration.mode === "per-state" ? 1 : 3;
    const measured: ThroughputRow[] = [];
    for (let attempt = 1; attempt <= repeats; attempt++) {
      const label =
        `tracker: ${configuration.mode}, ${configuration.engine} engine, ${configuration.max_in_flight} in flight` +
        (repeats > 1 ? ` (run ${attempt}/${repeats})` : "");
      progress.set(label, true);
      const show = counter(progress, (done) => `${label}: ${done}/${states} states final`);
      let first = 0;
      let last = 0;
      const tracker = issuer.tracker(configuration.engine === "local" ? localEngine() : replayEngine(plain.events), {
        anchor: configuration.mode,
        maxInFlight: configuration.max_in_flight,
        batchSize: 1_000,
        batchIntervalMs: 5_000,
        onProgress: (event) => {
          if (event.kind === "entered" && event.seq === 0) first = performance.now();
          if (event.kind === "final") {
            last = performance.now();
            show(event.seq + 1);
          }
        },
      });
      const started = performance.now();
      const head = await tracker.run(model, inputBytes);
      const wall = (performance.now() - started) / 1000;
      tracker.close();
      const seconds = (last - first) / 1000;
      // The entries, read back from the pages (a thousand: small), for the transactions that carried them.
      const entries = issuer.home.readEntries(head, 0, head.entries);
      measured.push({
        ...configuration,
        states: head.entries,
        seconds: round(seconds),
        states_per_second: Math.round(head.entries / seconds),
        wall_seconds: round(wall),
        transactions: new Set(entries.map((entry) => entry.transaction_hash)).size,
      });
    }
    measured.sort((a, b) => a.states_per_second - b.states_per_second);
    rows.push({ ...measured[Math.floor(measured.length / 2)], runs: repeats });
  }
  const untrackedSeconds = round(plain.seconds);
  const overhead: OverheadRow[] = [
    { mode: "untracked", max_in_flight: null, wall_seconds: untrackedSeconds, factor: 1 },
    ...rows
      .filter((row) => row.engine === "local")
      .map((row) => ({
        mode: row.mode,
        max_in_flight: row.max_in_flight,
        wall_seconds: row.wall_seconds,
        factor: round(row.wall_seconds / plain.seconds, 1),
      })),
  ];
  return {
    model: path.relative(ROOT, BENCH_MODEL),
    untracked_seconds: untrackedSeconds,
    engine_states_per_second: Math.round(states / plain.seconds),
    rows,
    overhead,
  };
}

function round(value: number, digits = 2): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}
