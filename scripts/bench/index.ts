/**
 * statetrail benchmarks (`npm run bench`): one run on a local `hardhat node` process writes BENCHMARKS.md and
 * BENCHMARKS.json at the repository root.
 *
 *   1. gas per recorded state: statetrail per-state / multi (10, 100) / batch (100, 1,000 per root), EAS
 *      `attest` and `timestamp`, the event-only floor and store-and-emit, each as a ratio to the floor;
 *   2. tracker throughput (states registered per second) per anchoring mode, automine, a 1,000-iteration Map;
 *   3. verifier time and peak RSS for 1,000 to 100,000-state instances (each in a child process), protocol v3,
 *      beside the protocol v2 rows of the last v2 run; 1,000,000-state instances with --scale or `npm run bench:scale`
 *      (their last figures are kept otherwise);
 *   4. the overhead of tracking: the same run's wall time with and without tracking;
 *   5. bytes written per publication by the tracker (protocol v3 appends), at 10 and 10,000 states.
 *
 * Options (or the environment variable in brackets):
 *   --only gas,tracker,verifier,publication   parts to run (BENCH_PARTS; default all)
 *   --sizes 1000,1000000                      verifier instance sizes (BENCH_SIZES; default 1,000 to 100,000)
 *   --scale                                   the 1,000,000-state runs too (BENCH_SCALE=1; `npm run bench:scale`
 *                                             runs only them: --only verifier --sizes 1000000 --plain)
 *   --anchors multi,batch                     verifier anchoring modes (BENCH_ANCHORS; default both)
 *   --profile cpu|heap                        each verification with --cpu-prof / --heap-prof (BENCH_PROFILE),
 *                                             written to bench-profiles/
 *   --trace                                   memory samples (every 100 ms) kept in BENCHMARKS.json (BENCH_TRACE=1)
 *   --plain                                   only the verifier runs without V9, compiled (BENCH_PLAIN=1)
 *   BENCH_CHILD_FLAGS="--max-old-space-size=64"  Node flags for the verifying processes (experiments; --out them)
 *   --out <file>                              the results to this JSON file only, BENCHMARKS.* untouched (BENCH_OUT)
 *   --merge <file>[,<file>]                   no run: merges results written with --out into BENCHMARKS.json, then
 *                                             writes BENCHMARKS.md (runs made side by side, each row keeping its
 *                                             own time and load)
 * A run of some parts or sizes replaces those figures in BENCHMARKS.json and keeps the others (each row says when
 * and under which load it was measured), then writes BENCHMARKS.md from the whole.
 *
 * A progress line goes to stderr. The test suite does not run this.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { Wallet } from "ethers";
import * as prettier from "prettier";
import { devPrivateKey } from "../../src/chain/keys";
import { PROTOCOL_VERSION } from "../../src/protocol/schema";
import { freePort, startNode } from "../../src/chain/node";
import { connect } from "../../src/chain/provider";
import { setupIssuer } from "../../test/helpers/issuer";
import { Progress, ROOT, machine, type Machine } from "./common";
import { measureGas, type GasResults } from "./gas";
import { measurePublication, type PublicationResults } from "./publication";
import { renderMarkdown } from "./report";
import { measureTracker, type TrackerResults } from "./tracker";
import {
  DEFAULT_PLAN,
  measureVerifier,
  type Anchor,
  type VerifierPlanItem,
  type VerifierResults,
  type VerifierRow,
} from "./verifier";

export interface Goal {
  goal: string;
  target: string;
  measured: string;
  met: boolean;
}

/** The protocol v2 verifier figures of the last run before protocol v3, kept for comparison. */
export interface PreviousVerifier {
  protocol_version: 2;
  generated_at: string;
  load_average: number;
  /** The machine of that run. */
  machine?: Pick<Machine, "cpu" | "cores" | "node">;
  rows: Array<
    Pick<
      VerifierRow,
      "states" | "anchor" | "runtime" | "conformance" | "protocol_mb" | "verdict" | "seconds" | "steps" | "peak_rss_mb"
    > & { baseline_rss_mb: number }
  >;
}

export interface BenchResults {
  /** 2: protocol v3 figures (rows carry when and under which load they were measured). */
  statetrail_benchmarks: 2;
  /** The protocol version of the verifier that wrote the file (each verifier row says its own). */
  protocol_version: number;
  generated_at: string;
  /** The last run's duration and what it ran. */
  seconds: number;
  ran: string;
  machine: Machine;
  gas: GasResults | null;
  tracker: TrackerResults | null;
  verifier: VerifierResults | null;
  publication: PublicationResults | null;
  previous: PreviousVerifier | null;
  goals: Goal[];
}

const ALL_PARTS = ["gas", "tracker", "verifier", "publication"];
const JSON_FILE = path.join(ROOT, "BENCHMARKS.json");

function options() {
  const { values } = parseArgs({
    options: {
      only: { type: "string" },
      sizes: { type: "string" },
      anchors: { type: "string" },
      profile: { type: "string" },
      trace: { type: "boolean" },
      plain: { type: "boolean" },
      out: { type: "string" },
      merge: { type: "string" },
      scale: { type: "boolean" },
    },
  });
  const list = (value: string | undefined): string[] | null =>
    value
      ? value
          .split(",")
          .map((part) => part.trim())
          .filter(Boolean)
      : null;
  const parts = new Set(list(values.only ?? process.env.BENCH_PARTS) ?? ALL_PARTS);
  for (const part of parts) if (!ALL_PARTS.includes(part)) throw new Error(`--only: unknown part ${part}`);
  const sizes = list(values.sizes ?? process.env.BENCH_SIZES)?.map((size) => Number(size.replace(/[_k]/g, "")));
  const anchors = (list(values.anchors ?? process.env.BENCH_ANCHORS) ?? ["multi", "batch"]) as Anchor[];
  const scale = values.scale ?? process.env.BENCH_SCALE === "1";
  let plan: VerifierPlanItem[] = DEFAULT_PLAN.filter(
    (item) => (sizes ? sizes.includes(item.states) : scale || !item.scale) && anchors.includes(item.anchor),
  );
  for (const states of sizes ?? []) {
    for (const anchor of anchors) {
      if (!plan.some((item) => item.states === states && item.anchor === anchor)) {
        plan.push({ states, anchor, runs: [{ conformance: false, runtime: "node" }] });
      }
    }
  }
  if (values.plain || process.env.BENCH_PLAIN === "1") {
    plan = plan.map((item) => ({ ...item, runs: [{ conformance: false, runtime: "node" as const }] }));
  }
  plan = plan.sort((a, b) => (a.anchor === b.anchor ? a.states - b.states : a.anchor === "multi" ? -1 : 1));
  const profile = values.profile ?? process.env.BENCH_PROFILE ?? null;
  if (profile !== null && profile !== "cpu" && profile !== "heap") throw new Error("--profile: cpu or heap");
  // Another place for the results (profiling runs that should not touch BENCHMARKS.*): JSON only.
  const out = values.out ?? process.env.BENCH_OUT ?? null;
  const merge = list(values.merge);
  return { parts, plan, profile, trace: values.trace ?? process.env.BENCH_TRACE === "1", sizes, anchors, out, merge };
}

/** The figures of the last run, to keep what this run does not measure. */
function previousResults(): { results: Partial<BenchResults> | null; v2: PreviousVerifier | null } {
  if (!fs.existsSync(JSON_FILE)) return { results: null, v2: null };
  const json = JSON.parse(fs.readFileSync(JSON_FILE, "utf8")) as Record<string, unknown>;
  if (json.statetrail_benchmarks === 2) {
    const results = json as unknown as BenchResults;
    return { results, v2: results.previous };
  }
  // The figures of protocol v2 (statetrail_benchmarks 1): the verifier rows are kept for comparison, the rest is
  // measured again.
  const old = json as { generated_at: string; machine: Machine; verifier: { rows: PreviousVerifier["rows"] } | null };
  return {
    results: null,
    v2: old.verifier
      ? {
          protocol_version: 2,
          generated_at: old.generated_at,
          load_average: old.machine.load_average,
          machine: { cpu: old.machine.cpu, cores: old.machine.cores, node: old.machine.node },
          rows: old.verifier.rows,
        }
      : null,
  };
}

function mergeVerifier(old: VerifierResults | null | undefined, now: VerifierResults): VerifierResults {
  if (!old) return now;
  const rowKey = (row: VerifierRow): string => `${row.states}/${row.anchor}/${row.runtime}/${row.conformance}`;
  const instanceKey = (row: { states: number; anchor: string }): string => `${row.states}/${row.anchor}`;
  const fresh = new Set(now.rows.map(rowKey));
  const built = new Set(now.instances.map(instanceKey));
  const order = (a: { states: number; anchor: string }, b: { states: number; anchor: string }): number =>
    a.anchor === b.anchor ? a.states - b.states : a.anchor === "multi" ? -1 : 1;
  return {
    instances: [...old.instances.filter((row) => !built.has(instanceKey(row))), ...now.instances].sort(order),
    rows: [...old.rows.filter((row) => !fresh.has(rowKey(row))), ...now.rows].sort(
      (a, b) => order(a, b) || Number(a.conformance) - Number(b.conformance) || a.runtime.localeCompare(b.runtime),
    ),
  };
}

/** Merges the figures of `now` into `old`: what `now` measured replaces what `old` had, the rest is kept. */
function mergeResults(old: Partial<BenchResults> | null, now: BenchResults): BenchResults {
  if (!old) return now;
  return {
    ...now,
    gas: now.gas ?? old.gas ?? null,
    tracker: now.tracker ?? old.tracker ?? null,
    publication: now.publication ?? old.publication ?? null,
    verifier: now.verifier ? mergeVerifier(old.verifier, now.verifier) : (old.verifier ?? null),
    previous: now.previous ?? old.previous ?? null,
  };
}

async function writeResults(results: BenchResults): Promise<void> {
  results.goals = goals(results);
  fs.writeFileSync(JSON_FILE, JSON.stringify(results, null, 2) + "\n");
  const markdown = path.join(ROOT, "BENCHMARKS.md");
  const prettierOptions = (await prettier.resolveConfig(markdown)) ?? {};
  fs.writeFileSync(
    markdown,
    await prettier.format(renderMarkdown(results), { ...prettierOptions, filepath: markdown }),
  );
}

async function main(): Promise<void> {
  const chosen = options();
  if (chosen.merge) {
    let merged = previousResults();
    let results = merged.results as BenchResults | null;
    for (const file of chosen.merge) {
      const run = JSON.parse(fs.readFileSync(file, "utf8")) as BenchResults;
      results = mergeResults(results, { ...run, previous: run.previous ?? merged.v2 });
      merged = { results, v2: results.previous };
    }
    if (!results) throw new Error("--merge: nothing to merge");
    await writeResults(results);
    process.stderr.write(`merged ${chosen.merge.join(", ")} into BENCHMARKS.json and BENCHMARKS.md\n`);
    return;
  }
  const progress = new Progress();
  const before = chosen.out ? { results: null, v2: null } : previousResults();
  const load = (): number => Math.round(os.loadavg()[0] * 100) / 100;
  const results: BenchResults = {
    statetrail_benchmarks: 2,
    protocol_version: PROTOCOL_VERSION,
    generated_at: new Date().toISOString(),
    seconds: 0,
    ran: process.argv.slice(2).join(" ") || "(all)",
    machine: machine(),
    gas: null,
    tracker: null,
    verifier: null,
    publication: null,
    previous: before.v2,
    goals: [],
  };
  progress.set("starting a hardhat node process (automine)", true);
  const node = await startNode({ hostname: "127.0.0.1", port: await freePort() });
  try {
    if (chosen.parts.has("gas")) {
      const provider = await connect({ rpcUrl: node.url, ensRegistry: null });
      try {
        results.gas = await measureGas(new Wallet(devPrivateKey(9), provider), progress);
      } finally {
        provider.destroy();
      }
    }
    if (chosen.parts.has("tracker") || chosen.parts.has("verifier") || chosen.parts.has("publication")) {
      progress.set("deploying registries and ENS, creating the issuer's identity, starting its HTTPS server", true);
      // The issuer's data directory (setupIssuer makes it under os.tmpdir()) on the filesystem chosen for it.
      const tmpdir = process.env.TMPDIR;
      process.env.TMPDIR = results.machine.data_dir.path;
      const issuer = await setupIssuer(node.url, { label: "bench" }).finally(() => {
        if (tmpdir === undefined) delete process.env.TMPDIR;
        else process.env.TMPDIR = tmpdir;
      });
      try {
        if (chosen.parts.has("tracker")) results.tracker = await measureTracker(issuer, progress);
        if (chosen.parts.has("publication")) results.publication = await measurePublication(issuer, progress);
        if (chosen.parts.has("verifier") && chosen.plan.length > 0) {
          results.verifier = await measureVerifier(issuer, node.url, progress, {
            plan: chosen.plan,
            profile: chosen.profile as "cpu" | "heap" | null,
            trace: chosen.trace,
            loadAverage: load,
            nodePid: node.pid,
          });
        }
      } finally {
        await issuer.close();
        fs.rmSync(issuer.home.root, { recursive: true, force: true });
        fs.rmSync(issuer.deploymentsDir, { recursive: true, force: true });
      }
    }
  } finally {
    await node.stop();
  }
  results.seconds = Math.round(progress.seconds);
  if (chosen.out) {
    results.goals = goals(results);
    fs.writeFileSync(chosen.out, JSON.stringify(results, null, 2) + "\n");
    progress.set(`done in ${results.seconds} s: ${chosen.out} written`, true);
    progress.done();
    return;
  }
  // Figures this run did not measure are kept from the last one.
  await writeResults(mergeResults(before.results, results));
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
  const plain = (row: VerifierRow): boolean => !row.conformance && row.runtime === "node";
  const find = (states: number, anchor: Anchor): VerifierRow | undefined =>
    verifier.find((row) => row.states === states && row.anchor === anchor && plain(row));
  const ten = find(10_000, "multi");
  if (ten) {
    list.push({
      goal: "verifier, 10,000 states (V0–V8)",
      target: "≤ 3 s",
      measured:
        `${ten.seconds} s` +
        (ten.cpu_seconds !== undefined ? ` (${ten.cpu_seconds} CPU seconds)` : "") +
        ` at load ${ten.load_average}`,
      met: ten.seconds <= 3 && ten.verdict === "valid",
    });
  }
  const hundred = find(100_000, "multi");
  if (hundred) {
    list.push({
      goal: "verifier, 100,000 states (V0–V8), peak RSS",
      target: "≤ 120 MB",
      measured: `${hundred.peak_rss_mb} MB`,
      met: hundred.peak_rss_mb <= 120 && hundred.verdict === "valid",
    });
  }
  for (const anchor of ["multi", "batch"] as const) {
    const million = find(1_000_000, anchor);
    if (!million) continue;
    list.push({
      goal: `verifier, 1,000,000 states, ${anchor} (V0–V8), peak RSS`,
      target: "≤ 200 MB",
      measured: `${million.peak_rss_mb} MB`,
      met: million.peak_rss_mb <= 200 && million.verdict === "valid",
    });
    list.push({
      goal: `verifier, 1,000,000 states, ${anchor} (V0–V8), time`,
      target: "≤ 60 s",
      measured:
        `${million.seconds} s` +
        (million.cpu_seconds !== undefined ? ` (${million.cpu_seconds} CPU seconds)` : "") +
        ` at load ${million.load_average}`,
      met: million.seconds <= 60 && million.verdict === "valid",
    });
  }
  // The compiled verifier, as `statetrail verify` runs it (the ts-node row also times the TypeScript compiler).
  const v8 = verifier.filter((row) => row.v8_ms >= 0 && row.runtime === "node");
  if (v8.length > 0) {
    const worst = v8.reduce((a, b) => (b.v8_ms > a.v8_ms ? b : a));
    list.push({
      goal: "verifier, V8 at any size (compiled; the wall time it adds)",
      target: "≤ 50 ms",
      measured: `at most ${worst.v8_ms} ms (${worst.states.toLocaleString("en")} states, ${worst.anchor})`,
      met: worst.v8_ms <= 50,
    });
  }
  const publication = results.publication;
  if (publication && publication.rows.length > 0) {
    const perEntry = publication.rows.map((row) => row.bytes_per_publication_per_new_entry);
    const small = publication.rows[0];
    const large = publication.rows[publication.rows.length - 1];
    list.push({
      goal: "publishing one more state: O(1) bytes written",
      target: "bytes written per publication independent of the instance's size",
      measured:
        `${small.states.toLocaleString("en")} states: ${Math.round(small.head_bytes_per_publication)} B head + ` +
        `${Math.round(small.page_bytes_per_entry)} B/entry; ${large.states.toLocaleString("en")} states: ` +
        `${Math.round(large.head_bytes_per_publication)} B head + ${Math.round(large.page_bytes_per_entry)} B/entry`,
      met: publication.constant && perEntry.every((value) => Number.isFinite(value)),
    });
  }
  return list;
}

main().catch((error: unknown) => {
  process.stderr.write(`\nbenchmark failed: ${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
});
