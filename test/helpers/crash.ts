import { contentOf, readStateDocument } from "../../src/protocol/disclosure";
import "../../src/engine/polyfill";
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { connect } from "../../src/chain/provider";
import { Trail } from "../../src/protocol/anchoring";
import { encodePages } from "../../src/protocol/pages";
import { type InstanceProtocol } from "../../src/protocol/schema";
import { Journal } from "../../src/tracker/journal";
import { readJournal, TRACKER_CRASHED } from "../../src/tracker/resume";
import { ChainView, rebuildChain, verifyProtocol } from "../../src/verify";
import { setupIssuer, type TestIssuer } from "./issuer";
import { seededRandom } from "./seeded-random";

const ROOT = path.resolve(__dirname, "..", "..");
const BIN = path.join(ROOT, "bin", "statetrail.js");
const EXAMPLES = path.join(ROOT, "examples");

export interface CrashCampaignOptions {
  rpcUrl: string;
  /**
   * Stop after this many kills (the runs in progress are finished and checked). The campaign is bounded by this
   * count, never by time: how long it takes is a benchmark figure (scripts/bench-crash.ts), not a pass condition.
   */
  kills: number;
  /** Parallel workers, each with its own issuer (key, data directory). */
  workers?: number;
  /**
   * A bound on the runs (default 4 per kill): runs that all finish before their kill point would otherwise never
   * reach the count. Reaching it is reported as a problem.
   */
  maxRuns?: number;
  /** Seed of the random kill points. */
  seed?: number;
  log?: (line: string) => void;
}

export interface RunOutcome {
  instance: string;
  anchor: string;
  kills: number;
  status: string;
  states: number;
  onChain: number;
  verdict: string;
  problems: string[];
  /** Wall time from the first start to the end of the last resume, and of the resumes alone (benchmark figures). */
  ms: number;
  resumeMs: number;
}

export interface CrashCampaignResult {
  kills: number;
  runs: RunOutcome[];
  problems: string[];
}

interface Spawned {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * `STATETRAIL_CRASH_FROM_SOURCE=1` runs the CLI from the TypeScript sources (ts-node, transpile only) instead of the
 * build in dist/: for checking the tracker's crash safety in a tree that is not built (slower start-up; the kill
 * points are journal records, not times, so the campaign is the same).
 */
const FROM_SOURCE = [
  "-r",
  "ts-node/register/transpile-only",
  "-e",
  'require("./src/cli/main").main(["node", "statetrail", ...process.argv.slice(1)]).then((code) => (process.exitCode = code))',
  "--",
];

function spawnCli(args: string[], env: NodeJS.ProcessEnv): Spawned {
  const command = process.env.STATETRAIL_CRASH_FROM_SOURCE === "1" ? [...FROM_SOURCE, ...args] : [BIN, ...args];
  const child = spawn(process.execPath, command, { cwd: ROOT, env: { ...process.env, ...env } });
  const spawned: Spawned = {
    child,
    stdout: "",
    stderr: "",
    exited: new Promise((resolve) => child.on("close", (code, signal) => resolve({ code, signal }))),
  };
  child.stdout!.on("data", (chunk: Buffer) => (spawned.stdout += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (spawned.stderr += chunk.toString()));
  return spawned;
}

/** A process of the campaign still running after this long is hung (not slow): the campaign reports it. */
const HUNG_MS = 600_000;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `predicate` holds or `ms` pass; true if it held. */
async function until(predicate: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > end) return false;
    await sleep(20);
  }
  return true;
}

function journalLines(issuer: TestIssuer, instance: string): number {
  try {
    return fs.readFileSync(issuer.home.journalFile(instance), "utf8").split("\n").length - 1;
  } catch {
    return 0;
  }
}

function instancesOf(issuer: TestIssuer): Set<string> {
  const dir = issuer.home.path("instances");
  return new Set(fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => /^[0-9a-f]{64}$/.test(n)) : []);
}

/**
 * Crash campaign (issue 7): real `statetrail run` processes against a real node, killed with SIGKILL at random
 * points, finished with `run --resume` (itself sometimes killed too), and checked after each run: the chain's
 * states are exactly the journal's, none twice, and the protocol verifies (valid; an aborted instance ends with
 * the tracker-crashed entry).
 */
export async function crashCampaign(options: CrashCampaignOptions): Promise<CrashCampaignResult> {
  const log = options.log ?? (() => undefined);
  const rand = seededRandom(options.seed ?? Date.now());
  const maxRuns = options.maxRuns ?? Math.max(8, options.kills * 4);
  let runsStarted = 0;
  const result: CrashCampaignResult = { kills: 0, runs: [], problems: [] };
  const workers = options.workers ?? 2;
  const issuers: TestIssuer[] = [];
  for (let i = 0; i < workers; i++) issuers.push(await setupIssuer(options.rpcUrl));
  // A typical run's journal length, learnt from the runs seen: kill points are spread over it.
  const typicalLines = new Map<string, number>([
    ["per-state fast", 150],
    ["multi fast", 60],
    ["per-state slow", 150],
    ["multi slow", 60],
    ["batch fast", 60],
    ["batch slow", 60],
  ]);

  const worker = async (issuer: TestIssuer, index: number): Promise<void> => {
    const env = {
      STATETRAIL_DEPLOYMENTS_DIR: issuer.deploymentsDir,
      STATETRAIL_PASSWORD: process.env.STATETRAIL_PASSWORD ?? "test-password",
      STATETRAIL_FAST_KEYSTORE: "1",
    };
    const base = ["--home", issuer.home.root, "--network", "localhost", "--rpc", options.rpcUrl];
    for (let run = 0; result.kills < options.kills; run++) {
      if (runsStarted++ >= maxRuns) {
        result.problems.push(`${maxRuns} runs started and only ${result.kills} of ${options.kills} kills made`);
        return;
      }
      const pick = rand();
      const anchor = pick < 0.45 ? "per-state" : pick < 0.75 ? "multi" : "batch";
      const inFlight = String(1 + Math.floor(rand() * 8));
      // Half the runs take their time in Task handlers: killed while the execution still runs (ends aborted).
      const slow = rand() < 0.5;
      const before = instancesOf(issuer);
      const first = spawnCli(
        [
          ...base,
          "run",
          path.join(EXAMPLES, "batch-scoring.asl.json"),
          "--input",
          `{"batchId":"crash-${index}-${run}-${Date.now()}"}`,
          "--handlers",
          slow
            ? path.join(ROOT, "test", "fixtures", "slow-scoring.handlers.js")
            : path.join(EXAMPLES, "batch-scoring.handlers.js"),
          "--skip-waits",
          "--anchor",
          anchor,
          ...(anchor === "batch" ? ["--batch-size", "8", "--batch-interval", "0.3"] : []),
          "--max-in-flight",
          inFlight,
        ],
        env,
      );
      // Kill points: mostly once the journal holds a random number of records (anywhere in the run: states
      // entered, intents, sent, final), some at a random time from the start (start-up, certificate, model).
      let kills = 0;
      let resumeMs = 0;
      const started = Date.now();
      const fresh = (): string | undefined => [...instancesOf(issuer)].find((name) => !before.has(name));
      let done: boolean;
      if (rand() < 0.1) {
        done = await Promise.race([first.exited.then(() => true), sleep(rand() * 6_000).then(() => false)]);
      } else {
        const target = 1 + Math.floor(rand() * typicalLines.get(`${anchor} ${slow ? "slow" : "fast"}`)!);
        await until(() => {
          const name = fresh();
          return first.child.exitCode !== null || (name !== undefined && journalLines(issuer, name) >= target);
        }, 120_000);
        done = first.child.exitCode !== null;
      }
      if (!done && result.kills >= options.kills) {
        // The other worker made the last kill meanwhile: this run ends on its own, so the count is exact.
        await first.exited;
        done = true;
      }
      if (!done) {
        // Counted before the await: the other worker checks the count meanwhile.
        result.kills += 1;
        kills += 1;
        first.child.kill("SIGKILL");
        await first.exited;
      }
      const created = fresh() === undefined ? [] : [fresh()!];
      if (created.length === 0) {
        // Killed before the instance existed (start-up, certificate check): nothing to resume.
        log(`  worker ${index} run ${run}: killed after ${Date.now() - started} ms, before any instance`);
        continue;
      }
      const instance = created[0];
      if (!Journal.read(issuer.home.journalFile(instance)).some((record) => record.type === "instance")) {
        // Killed between writing the input and the journal's first record: nothing was sent for it.
        log(`  worker ${index} run ${run}: killed before the journal's first record`);
        continue;
      }
      // Resume until it finishes; the resume itself is killed now and then.
      for (let attempt = 0; ; attempt++) {
        const exit = done && attempt === 0 ? await first.exited : undefined;
        if (exit && exit.code === 0) break;
        const resumeStarted = Date.now();
        const resume = spawnCli([...base, "run", "--resume", instance, "--anchor", anchor], env);
        void resume.exited.then(() => (resumeMs += Date.now() - resumeStarted));
        const killResume = attempt < 3 && result.kills < options.kills && rand() < 0.4;
        if (killResume) {
          // Killed once the resume has written a few records (registering what the chain lacks, terminating).
          const target = journalLines(issuer, instance) + 1 + Math.floor(rand() * 12);
          await until(() => resume.child.exitCode !== null || journalLines(issuer, instance) >= target, 60_000);
          if (resume.child.exitCode === null && result.kills < options.kills) {
            result.kills += 1;
            kills += 1;
            resume.child.kill("SIGKILL");
            await resume.exited;
            continue;
          }
        }
        // Not a time limit on the campaign: a resume still running after 10 minutes is hung, and reported so.
        let hung = false;
        const watchdog = setTimeout(() => ((hung = true), resume.child.kill("SIGKILL")), HUNG_MS);
        const { code } = await resume.exited;
        clearTimeout(watchdog);
        if (hung) {
          result.problems.push(`resume of ${instance} hung (killed after ${HUNG_MS / 60_000} minutes)`);
          break;
        }
        if (code !== 0) {
          result.problems.push(`resume of ${instance} exited ${code}: ${resume.stderr.slice(-400)} ${resume.stdout}`);
          break;
        }
        break;
      }
      if (kills === 0) typicalLines.set(`${anchor} ${slow ? "slow" : "fast"}`, journalLines(issuer, instance));
      const ms = Date.now() - started;
      const outcome = await check(issuer, instance, anchor, kills);
      outcome.ms = ms;
      outcome.resumeMs = resumeMs;
      result.runs.push(outcome);
      result.problems.push(...outcome.problems.map((p) => `${instance.slice(0, 12)}: ${p}`));
      log(
        `  worker ${index} run ${run} (${anchor}${slow ? ", slow tasks" : ""}, in flight ${inFlight}): ${kills} kill(s); ${outcome.status}, ` +
          `${outcome.states} states, ${outcome.onChain} on-chain, ${outcome.verdict}` +
          `${outcome.problems.length ? ` PROBLEMS: ${outcome.problems.join("; ")}` : ""}`,
      );
    }
  };
  try {
    await Promise.all(issuers.map((issuer, i) => worker(issuer, i)));
  } finally {
    for (const issuer of issuers) await issuer.close();
  }
  return result;
}

async function check(issuer: TestIssuer, instance: string, anchor: string, kills: number): Promise<RunOutcome> {
  const problems: string[] = [];
  const journal = readJournal(issuer.home, instance);
  const outcome: RunOutcome = {
    instance,
    anchor,
    kills,
    status: "?",
    states: 0,
    onChain: 0,
    verdict: "?",
    problems,
    ms: 0,
    resumeMs: 0,
  };
  let protocol: InstanceProtocol;
  try {
    protocol = issuer.home.readProtocol(instance);
  } catch (error) {
    problems.push(`no protocol: ${(error as Error).message}`);
    return outcome;
  }
  outcome.status = protocol.status;
  outcome.states = protocol.instance_protocol.length;
  const provider = await connect({ rpcUrl: issuer.provider._getConnection().url, ensRegistry: null });
  try {
    const trusted = { chainId: issuer.deployment.chainId, registries: issuer.registries, source: "crash test" };
    const view = new ChainView(provider, trusted);
    const chain = rebuildChain(
      instance,
      await view.instanceEvents(issuer.identity.record.address, instance, protocol.created.block_nr),
    );
    if (chain.anomalies.length > 0) problems.push(`anomalies: ${chain.anomalies.join("; ")}`);
    const journalled = journal.states.map((s) => s.hash);
    // Registered states are events of their own; Merkle-anchored ones are committed by terminateAnchored
    // (count and trail over all of them, in order).
    const anchored = chain.terminated?.anchored;
    const trail = new Trail(instance);
    for (const hash of journalled) trail.push(hash);
    const onChain = anchored
      ? anchored.stateCount === journalled.length && anchored.trail === trail.value
        ? journalled
        : []
      : chain.states.map((s) => s.stateHash);
    outcome.onChain = anchored ? anchored.stateCount : chain.states.length;
    if (JSON.stringify(onChain) !== JSON.stringify(journalled)) {
      problems.push(`on-chain ${outcome.onChain} states differ from the journal's ${journalled.length}`);
    }
    if (new Set(onChain).size !== onChain.length) problems.push("a state is registered twice");
    // The pages on disk are exactly those of the whole protocol (what an uninterrupted run appends): no torn or
    // duplicated line, no page ahead of the head, whatever the kills left before the resume rebuilt them.
    const pages = encodePages(protocol);
    pages.forEach((bytes, index) => {
      if (!fs.readFileSync(issuer.home.pageFile(instance, index)).equals(bytes)) {
        problems.push(`page ${index} differs from what an uninterrupted run writes`);
      }
    });
    if (fs.existsSync(issuer.home.pageFile(instance, pages.length)))
      problems.push(`a page ${pages.length} is left over`);
    const published = protocol.instance_protocol.map((e) => e.state_hash);
    if (JSON.stringify(published) !== JSON.stringify(journalled)) {
      problems.push("the protocol's entries differ from the journal");
    }
    if (!chain.terminated) problems.push("not terminated on-chain");
    if (protocol.status === "running") problems.push("still running");
    if (protocol.status === "aborted") {
      const last = journal.states[journal.states.length - 1];
      const outcome = last ? contentOf(readStateDocument(last.bytes)).outcome : null;
      if (outcome?.error?.error !== TRACKER_CRASHED.error) problems.push("aborted without the tracker-crashed entry");
    }
    const report = await verifyProtocol({
      input: { url: `${issuer.identity.record.url}/instances/${instance}/protocol` },
      provider,
      trusted,
      optional: ["V2"],
      ens: null,
    });
    outcome.verdict = report.verdict;
    if (report.verdict !== "valid") {
      const failed = report.steps.filter((s) => s.status === "fail").map((s) => `${s.id}: ${s.detail}`);
      problems.push(`verdict ${report.verdict}: ${failed.join("; ")}`);
    }
  } finally {
    provider.destroy();
  }
  return outcome;
}
