import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { trustedFromDeployment } from "../../src/verify";
import { PROTOCOL_VERSION } from "../../src/protocol/schema";
import { type TestIssuer } from "../../test/helpers/issuer";
import { buildInstance, removeInstance, type BuiltInstance } from "./build";
import { ROOT, counter, int, type Progress } from "./common";
import { compileForChild } from "./compile";

/** How the child process runs the verifier. */
export type Runtime = "node" | "ts-node";
export type Anchor = "multi" | "batch";

export interface VerifierRow {
  states: number;
  anchor: Anchor;
  runtime: Runtime;
  /** V9 (conformance to the model) checked too. */
  conformance: boolean;
  /** The signed head and every page. */
  protocol_mb: number;
  pages: number;
  verdict: string;
  /** verifyProtocol, all steps: wall time. */
  seconds: number;
  /**
   * The CPU time (user + system) the verifying process spent in it: on a machine shared with others' work the wall
   * time stretches with the load, the CPU time much less.
   */
  cpu_seconds?: number;
  /** The slowest steps, e.g. "V3 12.1 s, V6 0.3 s". */
  steps: string;
  /** Every step's time (ms). */
  step_ms: Record<string, number>;
  /** V8's own time (ms): the head's EIP-712 signature and the pages' accumulator and count, read in the pass. */
  v8_ms: number;
  /** Peak resident set size of the verifying process. */
  peak_rss_mb: number;
  /** Its RSS before verifying: Node and the modules loaded. */
  baseline_rss_mb: number;
  /** Sampled every 100 ms: the V8 heap's used bytes, and memory outside it (Buffers, native). */
  peak_heap_used_mb: number;
  peak_external_mb: number;
  /** What the verification read through the fetcher. */
  read: { head: number; pages: number; page_bytes: number; states: number; state_bytes: number; other: number };
  /** The commit the verifier was compiled from ("+" when src/ had uncommitted changes then). */
  verifier_commit?: string;
  /** The protocol version the instance was built and verified in (absent on rows measured before it was kept: 3). */
  protocol_version?: number;
  /** When and under which load (1-minute average at the start of the verification) the row was measured. */
  measured_at: string;
  load_average: number;
  /** Memory samples [ms, RSS MB, heap used MB, external MB] when traced (BENCH_TRACE=1). */
  samples?: Array<[number, number, number, number]>;
  /** The CPU or heap profile written, when profiled. */
  profile?: string;
}

export interface BuildRow extends Omit<BuiltInstance, "instanceHash" | "protocolUrl"> {
  measured_at: string;
  load_average: number;
  /** The hardhat node process: CPU seconds it spent during the build, its RSS after it and its peak RSS so far. */
  node?: { cpu_s: number; rss_mb: number; peak_rss_mb: number };
}

/** CPU seconds (user + system) and RSS of a process, from /proc (Linux); null elsewhere. */
export function processUsage(pid: number | null): { cpu_s: number; rss_mb: number; peak_rss_mb: number } | null {
  if (!pid) return null;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15 of stat)
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0);
    return { cpu_s: ticks / 100, rss_mb: Math.round(kb("VmRSS") / 1024), peak_rss_mb: Math.round(kb("VmHWM") / 1024) };
  } catch {
    return null;
  }
}

export interface VerifierResults {
  instances: BuildRow[];
  rows: VerifierRow[];
}

interface ChildResult {
  verdict: string;
  seconds: number;
  cpu_seconds: number;
  steps: Array<{ id: string; status: string; ms: number; detail: string }>;
  peak_rss_mb: number;
  baseline_rss_mb: number;
  peak_heap_used_mb: number;
  peak_external_mb: number;
  read: VerifierRow["read"];
  samples?: VerifierRow["samples"];
}

interface Run {
  conformance: boolean;
  runtime: Runtime;
}

export interface VerifierPlanItem {
  states: number;
  anchor: Anchor;
  runs: Run[];
  /** Long (tens of minutes on a busy 2-CPU machine): run by `npm run bench:scale` or when --sizes names it. */
  scale?: boolean;
}

const plain: Run = { conformance: false, runtime: "node" };
const withV9: Run = { conformance: true, runtime: "node" };

/**
 * The plan: multi at 1,000 / 10,000 / 100,000 / 1,000,000 states, batch at 1,000 / 10,000 / 100,000 / 1,000,000;
 * V9 (conformance) also at 1,000 to 100,000 multi; the 10,000-state multi run also through ts-node. The 1,000,000-state
 * instances are the scale runs (`scale`): `npm run bench` leaves them out and keeps their last figures.
 */
export const DEFAULT_PLAN: VerifierPlanItem[] = [
  { states: 1_000, anchor: "multi", runs: [plain, withV9] },
  { states: 10_000, anchor: "multi", runs: [plain, withV9, { conformance: false, runtime: "ts-node" }] },
  { states: 100_000, anchor: "multi", runs: [plain, withV9] },
  { states: 1_000_000, anchor: "multi", runs: [plain], scale: true },
  { states: 1_000, anchor: "batch", runs: [plain] },
  { states: 10_000, anchor: "batch", runs: [plain] },
  { states: 100_000, anchor: "batch", runs: [plain] },
  { states: 1_000_000, anchor: "batch", runs: [plain], scale: true },
];

export interface VerifierOptions {
  plan: VerifierPlanItem[];
  /** Run each verification with `--cpu-prof` or `--heap-prof` (profiles under bench-profiles/). */
  profile: "cpu" | "heap" | null;
  /** Keep memory samples in the rows. */
  trace: boolean;
  /** The 1-minute load average now. */
  loadAverage: () => number;
  /** The hardhat node's process id (its CPU time and memory are recorded with each build). */
  nodePid: number | null;
}

const PROFILE_DIR = path.join(ROOT, "dist", "bench-profiles");

/**
 * Runs one verification in a child process (its own peak RSS), pages and state bodies read from the data directory:
 * as compiled JavaScript (`node`, as `statetrail verify` runs it), or through ts-node (the TypeScript compiler loaded).
 */
function verifyInChild(
  issuer: TestIssuer,
  rpcUrl: string,
  built: BuiltInstance,
  run: Run,
  compiled: string,
  options: VerifierOptions,
): Promise<ChildResult & { profile?: string }> {
  const job = {
    rpcUrl,
    home: issuer.home.root,
    protocolUrl: built.protocolUrl,
    trusted: trustedFromDeployment(issuer.deployment),
    conformance: run.conformance,
    trace: options.trace,
  };
  const name = `${built.anchor}-${built.states}${run.conformance ? "-v9" : ""}-${run.runtime}`;
  const profiling = options.profile
    ? [
        `--${options.profile}-prof`,
        `--${options.profile}-prof-dir=${PROFILE_DIR}`,
        `--${options.profile}-prof-name=${name}.${options.profile === "cpu" ? "cpuprofile" : "heapprofile"}`,
      ]
    : [];
  if (options.profile) fs.mkdirSync(PROFILE_DIR, { recursive: true });
  const entry =
    run.runtime === "node"
      ? [compiled]
      : ["-r", "ts-node/register/transpile-only", path.join(__dirname, "verify-child.ts")];
  return new Promise((resolve, reject) => {
    const flags = (process.env.BENCH_CHILD_FLAGS ?? "").split(" ").filter(Boolean);
    const child = spawn(process.execPath, [...flags, ...profiling, ...entry, JSON.stringify(job)], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, TS_NODE_PROJECT: path.join(ROOT, "tsconfig.json") },
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()));
    child.on("error", reject);
    child.on("exit", (code) => {
      const line = out.trim().split("\n").pop() ?? "";
      if (code !== 0 || !line.startsWith("{")) reject(new Error(`verifier child exited ${code}: ${err.slice(-2000)}`));
      else {
        const result = JSON.parse(line) as ChildResult;
        resolve(options.profile ? { ...result, profile: path.relative(ROOT, path.join(PROFILE_DIR, name)) } : result);
      }
    });
  });
}

/**
 * Verifier time and peak RSS per instance size and anchoring mode, each verified in a process of its own; each
 * instance is removed from the data directory once verified (a 1,000,000-state instance is about 5 GB on disk).
 */
export async function measureVerifier(
  issuer: TestIssuer,
  rpcUrl: string,
  progress: Progress,
  options: VerifierOptions,
): Promise<VerifierResults> {
  progress.set("verifier: compiling the verifier to JavaScript for the child processes", true);
  const compiled = compileForChild(path.join(__dirname, "verify-child.ts"));
  const commit = sourceCommit();
  const instances: BuildRow[] = [];
  const rows: VerifierRow[] = [];
  for (const { states, anchor, runs } of options.plan) {
    const label = `verifier: building a ${int(states)}-state instance (${anchor})`;
    progress.set(label, true);
    const measuredAt = new Date().toISOString();
    const load = options.loadAverage();
    const nodeBefore = processUsage(options.nodePid);
    const built = await buildInstance(
      issuer,
      states,
      anchor,
      counter(progress, (done) => `${label}: ${int(done)} states on chain and in pages`),
    );
    const { instanceHash: _hash, protocolUrl: _url, ...summary } = built;
    const nodeAfter = processUsage(options.nodePid);
    instances.push({
      ...summary,
      measured_at: measuredAt,
      load_average: load,
      ...(nodeBefore && nodeAfter
        ? {
            node: {
              cpu_s: Math.round((nodeAfter.cpu_s - nodeBefore.cpu_s) * 10) / 10,
              rss_mb: nodeAfter.rss_mb,
              peak_rss_mb: nodeAfter.peak_rss_mb,
            },
          }
        : {}),
    });
    progress.set(`${label}: ${built.seconds} s`, true);
    try {
      for (const run of runs) {
        progress.set(
          `verifier: verifying ${int(states)} states (${anchor}${run.conformance ? ", with V9" : ""}, ${run.runtime}) in a child process`,
          true,
        );
        const at = new Date().toISOString();
        const loadAverage = options.loadAverage();
        const result = await verifyInChild(issuer, rpcUrl, built, run, compiled, options);
        const slowest = [...result.steps]
          .sort((a, b) => b.ms - a.ms)
          .slice(0, 3)
          .map((step) => `${step.id} ${(step.ms / 1000).toFixed(2)} s`)
          .join(", ");
        const failed = result.steps.filter((step) => step.status === "fail" || step.status === "error");
        const stepMs = Object.fromEntries(result.steps.map((step) => [step.id, step.ms]));
        rows.push({
          states,
          anchor,
          runtime: run.runtime,
          conformance: run.conformance,
          protocol_mb: Math.round((built.protocolBytes / 2 ** 20) * 10) / 10,
          pages: built.pages,
          verdict:
            result.verdict + (failed.length > 0 ? ` (${failed.map((s) => `${s.id}: ${s.detail}`).join("; ")})` : ""),
          seconds: Math.round(result.seconds * 100) / 100,
          cpu_seconds: Math.round(result.cpu_seconds * 100) / 100,
          steps: slowest,
          step_ms: stepMs,
          v8_ms: stepMs.V8 ?? -1,
          peak_rss_mb: Math.round(result.peak_rss_mb),
          baseline_rss_mb: Math.round(result.baseline_rss_mb),
          peak_heap_used_mb: Math.round(result.peak_heap_used_mb),
          peak_external_mb: Math.round(result.peak_external_mb),
          read: result.read,
          ...(commit ? { verifier_commit: commit } : {}),
          protocol_version: PROTOCOL_VERSION,
          measured_at: at,
          load_average: loadAverage,
          ...(result.samples ? { samples: result.samples } : {}),
          ...(result.profile ? { profile: result.profile } : {}),
        });
        progress.set(
          `verifier: ${int(states)} ${anchor}${run.conformance ? " V9" : ""} ${run.runtime}: ${result.verdict} in ` +
            `${rows[rows.length - 1].seconds} s, peak RSS ${rows[rows.length - 1].peak_rss_mb} MB`,
          true,
        );
      }
    } finally {
      removeInstance(issuer, built);
    }
  }
  return { instances, rows };
}

/** HEAD's short hash, with "+" when src/ has uncommitted changes (the verifier compiled is not that commit's). */
function sourceCommit(): string | null {
  try {
    const head = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: ROOT, encoding: "utf8" }).trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--", "src"], { cwd: ROOT, encoding: "utf8" }).trim();
    return dirty ? `${head}+` : head;
  } catch {
    return null;
  }
}
