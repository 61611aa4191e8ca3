/**
 * statetrail benchmarks (`npm run bench`): one run on a local `hardhat node` process writes BENCHMARKS.md and
 * BENCHMARKS.json at the repository root.
 *
 *   1. gas per recorded state: statetrail per-state / multi (10, 100) / batch (100, 1,000 per root), EAS
 *      `attest` and `timestamp`, the event-only floor and store-and-emit, each as a ratio to the floor;
 *   2. tracker throughput (states registered per second) per anchoring mode, automine, a 1,000-iteration Map;
 *   3. verifier time and peak RSS for 1,000 / 10,000 / 100,000-state instances (each in a child process);
 *   4. the overhead of tracking: the same run's wall time with and without tracking.
 *
 * A progress line goes to stderr. BENCH_PARTS=gas,tracker,verifier selects parts (default all).
 * The test suite does not run this.
 */
import fs from "node:fs";
import path from "node:path";
import { Wallet } from "ethers";
import * as prettier from "prettier";
import { devPrivateKey } from "../../src/chain/keys";
import { freePort, startNode } from "../../src/chain/node";
import { connect } from "../../src/chain/provider";
import { setupIssuer } from "../../test/helpers/issuer";
import { Progress, ROOT, machine, type Machine } from "./common";
import { measureGas, type GasResults } from "./gas";
import { renderMarkdown } from "./report";
import { measureTracker, type TrackerResults } from "./tracker";
import { measureVerifier, type VerifierResults } from "./verifier";

export interface Goal {
  goal: string;
  target: string;
  measured: string;
  met: boolean;
}

export interface BenchResults {
  statetrail_benchmarks: 1;
  generated_at: string;
  seconds: number;
  machine: Machine;
  gas: GasResults | null;
  tracker: TrackerResults | null;
  verifier: VerifierResults | null;
  goals: Goal[];
}

const PARTS = new Set((process.env.BENCH_PARTS ?? "gas,tracker,verifier").split(",").map((part) => part.trim()));

async function main(): Promise<void> {
  const progress = new Progress();
  const results: BenchResults = {
    statetrail_benchmarks: 1,
    generated_at: new Date().toISOString(),
    seconds: 0,
    machine: machine(),
    gas: null,
    tracker: null,
    verifier: null,
    goals: [],
  };
  progress.set("starting a hardhat node process (automine)", true);
  const node = await startNode({ hostname: "127.0.0.1", port: await freePort() });
  try {
    if (PARTS.has("gas")) {
      const provider = await connect({ rpcUrl: node.url, ensRegistry: null });
      try {
        results.gas = await measureGas(new Wallet(devPrivateKey(9), provider), progress);
      } finally {
        provider.destroy();
      }
    }
    if (PARTS.has("tracker") || PARTS.has("verifier")) {
      progress.set("deploying registries and ENS, creating the issuer's identity, starting its HTTPS server", true);
      const issuer = await setupIssuer(node.url, { label: "bench" });
      try {
        if (PARTS.has("tracker")) results.tracker = await measureTracker(issuer, progress);
        if (PARTS.has("verifier")) results.verifier = await measureVerifier(issuer, node.url, progress);
      } finally {
        await issuer.close();
      }
    }
  } finally {
    await node.stop();
  }
  results.seconds = Math.round(progress.seconds);
  results.goals = goals(results);
  fs.writeFileSync(path.join(ROOT, "BENCHMARKS.json"), JSON.stringify(results, null, 2) + "\n");
  const markdown = path.join(ROOT, "BENCHMARKS.md");
  const options = (await prettier.resolveConfig(markdown)) ?? {};
  fs.writeFileSync(markdown, await prettier.format(renderMarkdown(results), { ...options, filepath: markdown }));
  progress.set(`done in ${results.seconds} s: BENCHMARKS.md and BENCHMARKS.json written`, true);
  progress.done();
}

function goals(results: BenchResults): Goal[] {
  const list: Goal[] = [];
  const gas = results.gas?.rows ?? [];
  const gasGoal = (goal: string, name: string, target: number): void => {
    const row = gas.find((candidate) => candidate.name === name);
    if (!row) return;
    list.push({
      goal,
      target: `≤ ${target.toLocaleString("en")} gas/state`,
      measured: `${row.gas_per_state.toLocaleString("en")} gas/state`,
      met: row.gas_per_state <= target,
    });
  };
  gasGoal("registerState", "statetrail per-state", 31_000);
  gasGoal("registerStates at 100", "statetrail multi (100)", 3_500);
  gasGoal("batch at 1,000 per root", "statetrail batch (1,000)", 100);
  const throughput = results.tracker?.rows ?? [];
  const rate = (goal: string, mode: string, inFlight: number, target: number): void => {
    for (const engine of ["local", "replay"] as const) {
      const row = throughput.find((r) => r.mode === mode && r.engine === engine && r.max_in_flight === inFlight);
      if (!row) continue;
      list.push({
        goal: `${goal} (${engine === "local" ? "local engine" : "replayed events: engine cost excluded"})`,
        target: `≥ ${target.toLocaleString("en")} states/s`,
        measured: `${row.states_per_second.toLocaleString("en")} states/s`,
        met: row.states_per_second >= target,
      });
    }
  };
  rate("tracker, batch mode", "batch", 16, 2_000);
  rate("tracker, per-state with pipelining", "per-state", 16, 150);
  const verifier = results.verifier?.rows ?? [];
  const plain = (row: (typeof verifier)[number]): boolean =>
    row.anchor === "multi" && !row.conformance && row.runtime === "node";
  const ten = verifier.find((row) => row.states === 10_000 && plain(row));
  if (ten) {
    list.push({
      goal: "verifier, 10,000 states (V0–V8)",
      target: "≤ 3 s",
      measured: `${ten.seconds} s`,
      met: ten.seconds <= 3,
    });
  }
  const hundred = verifier.find((row) => row.states === 100_000 && plain(row));
  if (hundred) {
    list.push({
      goal: "verifier, 100,000 states (V0–V8), peak RSS",
      target: "≤ 200 MB",
      measured: `${hundred.peak_rss_mb} MB`,
      met: hundred.peak_rss_mb <= 200,
    });
  }
  return list;
}

main().catch((error: unknown) => {
  process.stderr.write(`\nbenchmark failed: ${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
});
