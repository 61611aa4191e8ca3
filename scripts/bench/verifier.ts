import { spawn } from "node:child_process";
import path from "node:path";
import { trustedFromDeployment } from "../../src/verify";
import { type TestIssuer } from "../../test/helpers/issuer";
import { buildInstance, type BuiltInstance } from "./build";
import { ROOT, counter, int, type Progress } from "./common";
import { compileForChild } from "./compile";

export interface VerifierRow {
  states: number;
  anchor: "multi" | "batch";
  runtime: Runtime;
  /** V9 (conformance to the model) checked too. */
  conformance: boolean;
  protocol_mb: number;
  verdict: string;
  /** verifyProtocol, all steps. */
  seconds: number;
  /** The slowest steps, e.g. "V6 1.2 s, V1 0.3 s". */
  steps: string;
  /** Peak resident set size of the verifying process. */
  peak_rss_mb: number;
  /** Its RSS before verifying: Node, ts-node and the modules loaded. */
  baseline_rss_mb: number;
}

export interface VerifierResults {
  instances: Array<Omit<BuiltInstance, "instanceHash" | "protocolUrl">>;
  rows: VerifierRow[];
}

interface ChildResult {
  verdict: string;
  seconds: number;
  steps: Array<{ id: string; status: string; ms: number; detail: string }>;
  peak_rss_mb: number;
  baseline_rss_mb: number;
}

const MAX_PROTOCOL_BYTES = 512 * 1024 * 1024;

/** How the child process runs the verifier. */
export type Runtime = "node" | "ts-node";

/**
 * Runs one verification in a child process (its own peak RSS), state bodies read from the data directory: as
 * compiled JavaScript (`node`), or through ts-node as bin/statetrail.js runs it (the TypeScript compiler loaded).
 */
function verifyInChild(
  issuer: TestIssuer,
  rpcUrl: string,
  built: BuiltInstance,
  conformance: boolean,
  runtime: Runtime,
  compiled: string,
): Promise<ChildResult> {
  const job = {
    rpcUrl,
    home: issuer.home.root,
    protocolUrl: built.protocolUrl,
    trusted: trustedFromDeployment(issuer.deployment),
    conformance,
    maxProtocolBytes: MAX_PROTOCOL_BYTES,
  };
  const entry =
    runtime === "node"
      ? [compiled]
      : ["-r", "ts-node/register/transpile-only", path.join(__dirname, "verify-child.ts")];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...entry, JSON.stringify(job)], {
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
      else resolve(JSON.parse(line) as ChildResult);
    });
  });
}

/**
 * Verifier time and peak RSS for 1,000 / 10,000 / 100,000-state instances, each verified in a process of its
 * own: registered with registerStates (multi) for all three sizes, anchored in Merkle roots (batch) for
 * 1,000 and 10,000 (a 100,000-state protocol with proofs is about 150 MB of JSON).
 */
export async function measureVerifier(
  issuer: TestIssuer,
  rpcUrl: string,
  progress: Progress,
): Promise<VerifierResults> {
  type Run = { conformance: boolean; runtime: Runtime };
  const plain: Run = { conformance: false, runtime: "node" };
  const withV9: Run = { conformance: true, runtime: "node" };
  const plan: Array<{ states: number; anchor: "multi" | "batch"; runs: Run[] }> = [
    { states: 1_000, anchor: "multi", runs: [plain, withV9] },
    { states: 10_000, anchor: "multi", runs: [plain, withV9, { conformance: false, runtime: "ts-node" }] },
    { states: 100_000, anchor: "multi", runs: [plain, withV9] },
    { states: 1_000, anchor: "batch", runs: [plain] },
    { states: 10_000, anchor: "batch", runs: [plain] },
  ];
  progress.set("verifier: compiling the verifier to JavaScript for the child processes", true);
  const compiled = compileForChild(path.join(__dirname, "verify-child.ts"));
  const instances: VerifierResults["instances"] = [];
  const rows: VerifierRow[] = [];
  for (const { states, anchor, runs } of plan) {
    const label = `verifier: building a ${int(states)}-state instance (${anchor})`;
    progress.set(label, true);
    const built = await buildInstance(
      issuer,
      states,
      anchor,
      counter(progress, (done) => `${label}: ${Math.round((done / states) * 100)}%`),
    );
    const { instanceHash: _hash, protocolUrl: _url, ...summary } = built;
    instances.push(summary);
    for (const { conformance: withConformance, runtime } of runs) {
      progress.set(
        `verifier: verifying ${int(states)} states (${anchor}${withConformance ? ", with V9" : ""}, ${runtime}) in a child process`,
        true,
      );
      const result = await verifyInChild(issuer, rpcUrl, built, withConformance, runtime, compiled);
      const slowest = [...result.steps]
        .sort((a, b) => b.ms - a.ms)
        .slice(0, 3)
        .map((step) => `${step.id} ${(step.ms / 1000).toFixed(2)} s`)
        .join(", ");
      const failed = result.steps.filter((step) => step.status === "fail" || step.status === "error");
      rows.push({
        states,
        anchor,
        runtime,
        conformance: withConformance,
        protocol_mb: Math.round((built.protocolBytes / 2 ** 20) * 10) / 10,
        verdict:
          result.verdict + (failed.length > 0 ? ` (${failed.map((s) => `${s.id}: ${s.detail}`).join("; ")})` : ""),
        seconds: Math.round(result.seconds * 100) / 100,
        steps: slowest,
        peak_rss_mb: Math.round(result.peak_rss_mb),
        baseline_rss_mb: Math.round(result.baseline_rss_mb),
      });
    }
  }
  return { instances, rows };
}
