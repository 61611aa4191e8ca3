import path from "node:path";
import fs from "node:fs";
import { int } from "./common";
import { type BenchResults } from "./index";
import { type PublicationResults } from "./publication";
import { type VerifierRow } from "./verifier";
import { PROTOCOL_VERSION } from "../../src/protocol/schema";

type Cell = string | number;

function table(head: string[], rows: Cell[][], align: Array<"l" | "r"> = []): string {
  const line = (cells: Cell[]): string => `| ${cells.map(String).join(" | ")} |`;
  const rule = `| ${head.map((_, i) => (align[i] === "r" ? "---:" : "---")).join(" | ")} |`;
  return [line(head), rule, ...rows.map(line)].join("\n");
}

/** BENCHMARKS.md: the machine, then one table per part, then the goals. */
/** Which protocol version the verifier rows were measured on (rows from before versions were kept: 3). */
function protocolVersions(results: BenchResults): string {
  const rows = results.verifier?.rows ?? [];
  const versions = [...new Set(rows.map((row) => row.protocol_version ?? 3))].sort();
  if (versions.length <= 1) return `protocol version ${versions[0] ?? PROTOCOL_VERSION}`;
  const latest = versions[versions.length - 1];
  return (
    `protocol version ${latest} for the verifier rows measured with it, ` +
    `${versions.slice(0, -1).join(" and ")} for the others (each row's commit says which verifier)`
  );
}

export function renderMarkdown(results: BenchResults): string {
  const m = results.machine;
  const out: string[] = [
    "# statetrail benchmarks",
    "",
    `Written by \`npm run bench\` (scripts/bench/) on ${results.generated_at.replace("T", " ").replace(/\.\d+Z$/, " UTC")} ` +
      `(the last run, \`${results.ran}\`, took ${results.seconds} s) on a local \`hardhat node\` process (automine); ` +
      `${protocolVersions(results)}. Figures a run did not measure are kept from the run that did: each verifier ` +
      "row says when it was measured and under which load. Raw figures: BENCHMARKS.json.",
    "",
    table(
      ["CPU", "cores", "RAM", "OS", "Node", "Hardhat", "solc", "load average at start", "data directory"],
      [
        [
          m.cpu,
          m.cores,
          `${m.ram_gib} GiB`,
          m.os,
          m.node,
          m.hardhat,
          m.solc,
          m.load_average,
          m.data_dir ? `${m.data_dir.filesystem}: ${m.data_dir.why}` : "",
        ],
      ],
    ),
    "",
    "Speed figures depend on the machine and on what else runs on it (the load average above); gas figures do not.",
    "",
    "Elsewhere: the CLI's start and the auditor's install in [BENCHMARKS-startup.md](BENCHMARKS-startup.md) " +
      "(`npm run bench:startup`), the replay of recorded AWS histories in [BENCHMARKS-replay.md](BENCHMARKS-replay.md) " +
      "(`npm run bench:replay`), the server under load (open and signed in) in [LOADTEST.md](LOADTEST.md).",
  ];

  if (results.gas) {
    out.push(
      "",
      "## 1. Gas per recorded state",
      "",
      "Side by side in the same run on the same chain. Hashes are random SHA-256 values; each figure is the mean of " +
        "5 calls. The floor is the cheapest possible on-chain record of one hash: an event carrying it, nothing stored.",
      "",
      table(
        ["", "one call", "states per call", "gas per call", "gas per state", "× floor"],
        results.gas.rows.map((row) => [
          `**${row.name}**`,
          row.what,
          int(row.states),
          int(row.gas),
          int(row.gas_per_state),
          row.ratio_to_floor.toFixed(row.ratio_to_floor < 0.01 ? 4 : row.ratio_to_floor < 1 ? 3 : 2),
        ]),
        ["l", "l", "r", "r", "r", "r"],
      ),
      "",
      "Once per instance, whatever the mode:",
      "",
      table(
        ["call", "gas"],
        results.gas.per_instance.map((row) => [row.name, int(row.gas)]),
        ["l", "r"],
      ),
    );
  }

  if (results.tracker) {
    const t = results.tracker;
    out.push(
      "",
      "## 2. Tracker throughput",
      "",
      `\`${t.model}\` (a Pass, a Map of 1,000 Task iterations, a Succeed, the end entry) on a \`hardhat node\` process ` +
        "with automine; the local engine with the echo Task handler and waits skipped. States per second count from " +
        "the first state entered to the last state final in the protocol. The local engine alone enters " +
        `${int(t.engine_states_per_second)} states/s here (an untracked run: ${t.untracked_seconds} s), a ceiling for ` +
        "the local-engine rows; the replay rows feed the tracker the same run's recorded events as fast as it takes " +
        "them, which is the tracker's own capacity. Batch mode: a root per 1,000 states (or 5 s). Multi and batch " +
        "runs take about a second: each is made three times and the median is shown.",
      "",
      table(
        ["mode", "engine", "in flight", "states", "seconds", "states/s", "transactions", "whole run (s)"],
        t.rows.map((row) => [
          row.mode,
          row.engine,
          row.max_in_flight,
          int(row.states),
          row.seconds,
          `**${int(row.states_per_second)}**`,
          int(row.transactions),
          row.wall_seconds,
        ]),
        ["l", "l", "r", "r", "r", "r", "r", "r"],
      ),
      "",
      "The whole run also includes the checks before the run, the model and instance registration, the termination and " +
        "the last publication of the protocol.",
    );
  }

  if (results.verifier || results.previous) out.push(...verifierSection(results));

  if (results.tracker) {
    const t = results.tracker;
    out.push(
      "",
      "## 4. Overhead of tracking",
      "",
      "Wall time of the same local-engine run of the same model, untracked (the engine alone) and tracked in each mode " +
        "(the whole `tracker.run`).",
      "",
      table(
        ["run", "in flight", "wall time (s)", "× untracked"],
        t.overhead.map((row) => [row.mode, row.max_in_flight ?? "", row.wall_seconds, row.factor]),
        ["l", "r", "r", "r"],
      ),
    );
  }

  if (results.publication) out.push(...publicationSection(results.publication, results.previous));

  out.push(...loadTestSection());

  out.push(...boundsSection(results));

  if (results.goals.length > 0) {
    out.push(
      "",
      "## Goals",
      "",
      table(
        ["goal", "target", "measured", ""],
        results.goals.map((goal) => [goal.goal, goal.target, goal.measured, goal.met ? "met" : "**not met**"]),
      ),
    );
  }
  return out.join("\n") + "\n";
}

/**
 * The HTTPS server under load, from the last `scripts/load-test.ts` run (load-test.json; see LOADTEST.md).
 * It is a separate script because it needs minutes of its own; its figures are copied here, not re-measured.
 */
function loadTestSection(): string[] {
  const file = path.join(__dirname, "..", "..", "load-test.json");
  if (!fs.existsSync(file)) return [];
  const load = JSON.parse(fs.readFileSync(file, "utf8")) as {
    date: string;
    machine: { load_average: number[] };
    options: { seconds: number; connections: number; subscribers: number };
    protocol: { states: number; bytes: number };
    http: { requests: number; requests_per_second: number; errors: number; latency_ms: Record<string, number> };
    sse: { clients: number; complete: number; events_delivered: number; duplicates: number };
  };
  const { sse } = load;
  return [
    "",
    "## 6. Server under load",
    "",
    `From \`scripts/load-test.ts\` (${load.date}, load average ${load.machine.load_average[0]}; details in LOADTEST.md): ` +
      `protocol GETs (${load.protocol.states} states, ${load.protocol.bytes} bytes) from ${load.options.connections} ` +
      `keep-alive connections for ${load.options.seconds} s while a run is tracked and streamed to ${load.options.subscribers} SSE subscribers.`,
    "",
    table(
      [
        "requests",
        "requests/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "SSE subscribers complete",
        "events delivered",
        "duplicates",
      ],
      [
        [
          String(load.http.requests),
          `**${Math.round(load.http.requests_per_second)}**`,
          load.http.latency_ms.p50.toFixed(1),
          load.http.latency_ms.p99.toFixed(1),
          String(load.http.errors),
          `${sse.complete}/${sse.clients}`,
          String(sse.events_delivered),
          String(sse.duplicates),
        ],
      ],
    ),
  ];
}

const mb = (bytes: number): number => Math.round((bytes / 2 ** 20) * 10) / 10;
const when = (iso: string): string => iso.replace("T", " ").replace(/:\d\d\.\d+Z$/, " UTC");

/** Section 3: the protocol v3 rows, how the instances were built, and the protocol v2 rows for comparison. */
function verifierSection(results: BenchResults): string[] {
  const v = results.verifier;
  const previous = results.previous;
  const out: string[] = ["", "## 3. Verifier time and peak RSS"];
  if (v) {
    const before = (row: VerifierRow): string => {
      const old = previous?.rows.find(
        (candidate) =>
          candidate.states === row.states &&
          candidate.anchor === row.anchor &&
          candidate.conformance === row.conformance &&
          candidate.runtime === row.runtime,
      );
      return old ? `${old.seconds} s, ${int(old.peak_rss_mb)} MB` : "";
    };
    out.push(
      "",
      "Genuine protocol v3 instances of the benchmark model (a loop of Task iterations: a Choice, the Task, a counting " +
        "Pass; 3 states per iteration), registered 1,000 states per transaction (registerStates), or anchored in a " +
        "Merkle root per 1,000 states and terminated with terminateAnchored (batch); their state data, signed head and " +
        "pages (1,024 entries each) in the issuer's data directory. Each verification runs in a process of its own " +
        "against the node; the head, pages and state bodies are read by a file-backed fetcher that serves the data " +
        "directory as the issuer's server does (the network is not measured); state bodies 8 at a time. `node`: the " +
        "verifier compiled to JavaScript, as `statetrail verify` runs it; `ts-node`: the TypeScript sources through " +
        "ts-node, as the tests run them (the TypeScript compiler loaded too; for comparison). Peak RSS is the process's (`process.resourceUsage().maxRSS`); baseline: its RSS before verifying " +
        "(Node and the modules loaded); heap: the V8 heap's used bytes at their peak (sampled every 100 ms). V2 (ENS) " +
        "is skipped; V9 (conformance) is off unless said. Seconds are wall time; CPU seconds are the verifying process's " +
        "user and system time (on this shared 2-CPU machine the wall time stretches with the load shown in the last " +
        "column; a process may also use more than one CPU: Node's garbage collector and I/O threads).",
      "",
      "The steps share one streaming pass over the pages, the chain's events and the state bodies (src/verify/steps/" +
        "pass.ts), and V0 and V2–V8 run at once; a step's time is the wall time it adds after the steps listed " +
        "before it (the report's `durationMs`). V3 is the first listed step to await the pass, so **V3's time is the " +
        "pass's**, and V5–V8 report what it found. V8 checks the head's EIP-712 signature when the steps start, while " +
        "the pass reads, and compares the pass's accumulator and count with the head once it is done: its time is " +
        "what that adds (before the steps ran at once, V8 ran after the pass, and its time was the signature's, " +
        "some 25–40 ms in a fresh process).",
      "",
      table(
        [
          "states",
          "anchoring",
          "V9",
          "runtime",
          "pages",
          "protocol (MB)",
          "verdict",
          "seconds",
          "CPU seconds",
          "slowest steps",
          "V8 (ms)",
          "peak RSS (MB)",
          "baseline RSS (MB)",
          "peak heap (MB)",
          "protocol v2: seconds, peak RSS",
          "measured (load), verifier commit",
        ],
        v.rows.map((row) => [
          int(row.states),
          row.anchor,
          row.conformance ? "on" : "off",
          row.runtime,
          int(row.pages),
          row.protocol_mb,
          row.verdict,
          `**${row.seconds}**`,
          row.cpu_seconds ?? "",
          row.steps,
          row.v8_ms,
          `**${int(row.peak_rss_mb)}**`,
          int(row.baseline_rss_mb),
          int(row.peak_heap_used_mb),
          before(row),
          `${when(row.measured_at)} (${row.load_average})${row.verifier_commit ? `, ${row.verifier_commit}` : ""}`,
        ]),
        ["r", "l", "l", "l", "r", "r", "l", "r", "r", "l", "r", "r", "r", "r", "l", "l"],
      ),
      "",
      "Building the instances (scripts/bench/build.ts, streaming: state data written, 1,000 states per transaction and " +
        "16 transactions in flight, each chunk's entries appended to the pages once its receipt is in, then the head " +
        "signed; the builder holds the chunks in flight, never all entries or all state data). Phases: state data " +
        "generated, hashed and written (one file each); sending (ABI encoding, signing, waiting for room among the " +
        "16 in flight: mostly the node's time); waiting for receipts and block times; Merkle trees and entries; " +
        "pages appended.",
      "",
      table(
        [
          "states",
          "anchoring",
          "transactions",
          "pages",
          "protocol (MB)",
          "state bodies (MB)",
          "seconds",
          "state data (s)",
          "sending (s)",
          "chain wait (s)",
          "trees, entries (s)",
          "pages (s)",
          "builder peak RSS (MB)",
          "node: CPU (s), RSS after, peak (MB)",
          "measured (load)",
        ],
        v.instances.map((built) => [
          int(built.states),
          built.anchor,
          int(built.transactions),
          int(built.pages),
          mb(built.protocolBytes),
          mb(built.stateBytes),
          `**${built.seconds}**`,
          built.phases.states_s,
          built.phases.send_s ?? "",
          built.phases.chain_wait_s,
          built.phases.proofs_s,
          built.phases.pages_s,
          int(built.peak_rss_mb),
          built.node ? `${built.node.cpu_s}, ${int(built.node.rss_mb)}, ${int(built.node.peak_rss_mb)}` : "",
          `${when(built.measured_at)} (${built.load_average})`,
        ]),
        ["r", "l", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r", "l"],
      ),
    );
  }
  if (previous) {
    out.push(
      "",
      `### Protocol v2, for comparison (not re-measured)`,
      "",
      `From the run of ${when(previous.generated_at)} (load average ${previous.load_average}` +
        (previous.machine
          ? `, on ${previous.machine.cpu}, ${previous.machine.cores} cores, Node ${previous.machine.node}`
          : "") +
        "), copied from that " +
        "run's BENCHMARKS.json: protocol version 2, one document signed whole, read and held in memory; a Map model " +
        "(its Map state carrying the items array).",
      "",
      table(
        [
          "states",
          "anchoring",
          "V9",
          "runtime",
          "protocol (MB)",
          "verdict",
          "seconds",
          "slowest steps",
          "peak RSS (MB)",
        ],
        previous.rows.map((row) => [
          int(row.states),
          row.anchor,
          row.conformance ? "on" : "off",
          row.runtime,
          row.protocol_mb,
          row.verdict,
          row.seconds,
          row.steps,
          int(row.peak_rss_mb),
        ]),
        ["r", "l", "l", "l", "r", "l", "r", "l", "r"],
      ),
    );
  }
  return out;
}

/** Section 5: what publishing costs the tracker in bytes written. */
function publicationSection(publication: PublicationResults, previous: BenchResults["previous"]): string[] {
  const v2 = previous?.rows.find((row) => row.states === 10_000 && row.anchor === "multi");
  return [
    "",
    "## 5. Bytes written per publication",
    "",
    "Real tracked runs of the benchmark loop model (the local engine's events with the echo Task handler, recorded " +
      "and fed to the tracker; multi mode, 16 in flight), " +
      "every write to the instance's head (`protocol.json`, rewritten whole and atomically) and pages (appended) " +
      "counted by a wrapper around node:fs and read at each published head. The tracker publishes at most every " +
      "250 ms, so one publication carries the entries confirmed since the last one; a page byte written twice would " +
      "be counted as rewritten.",
    "",
    table(
      [
        "states",
        "publications",
        "head bytes per publication",
        "page bytes per entry",
        "bytes per publication (mean / largest)",
        "entries per publication (mean / largest)",
        "last publication with new entries",
        "page bytes rewritten",
      ],
      publication.rows.map((row) => [
        int(row.states),
        int(row.publications),
        `**${int(row.head_bytes_per_publication)}**`,
        `**${row.page_bytes_per_entry}**`,
        `${int(row.bytes_per_publication)} / ${int(row.bytes_per_publication_max)}`,
        `${row.entries_per_publication} / ${int(row.entries_per_publication_max)}`,
        `${int(row.last.bytes)} bytes for ${int(row.last.entries)} entries`,
        int(row.page_rewrites),
      ]),
      ["r", "r", "r", "r", "r", "r", "l", "r"],
    ),
    "",
    `Publishing one more state writes its line to a page and a head of constant size: ${publication.constant ? "the same" : "**not** the same"} ` +
      "head bytes per publication and page bytes per entry at every size (within 5 %)" +
      (v2
        ? `; a protocol v2 publication rewrote the whole signed document (${v2.protocol_mb} MB at ${int(v2.states)} states, protocol v2 rows above).`
        : "."),
  ];
}

/** What bounds the figures: the largest rows, read from the results. */
function boundsSection(results: BenchResults): string[] {
  const lines: string[] = [
    "",
    "## What bounds these figures",
    "",
    "- **Local-engine throughput** is bounded by the interpreter (aws-local-stepfunctions enters the states in the " +
      "same thread as the tracker); the replay rows show what the tracker itself sustains.",
    "- **per-state** on an automining node is one block per transaction: each state costs the node a block, a " +
      "receipt and a block read. Pipelining overlaps them (transactions are signed ahead and sent in nonce order).",
  ];
  const rows = results.verifier?.rows.filter((row) => !row.conformance && row.runtime === "node") ?? [];
  for (const row of rows.filter((r) => r.states >= 100_000)) {
    const pass = row.step_ms.V3 ?? 0;
    const perState = (pass / row.states) * 1000;
    const cpuPerState = row.cpu_seconds !== undefined ? (row.cpu_seconds / row.states) * 1e6 : null;
    lines.push(
      `- **Verifier, ${int(row.states)} states (${row.anchor})**: ${row.seconds} s, of which the streaming pass ` +
        `(in V3) ${(pass / 1000).toFixed(1)} s (${perState.toFixed(0)} µs of wall time per state` +
        (cpuPerState !== null ? `, ${cpuPerState.toFixed(0)} µs of CPU time for the whole verification` : "") +
        `: a page line parsed, ` +
        `schema-checked and hashed into the accumulator, the state body read, hashed, parsed and checked` +
        `${row.anchor === "batch" ? ", the Merkle proof checked" : ""}); it read ${int(row.read.pages)} pages ` +
        `(${mb(row.read.page_bytes)} MB) and ${int(row.read.states)} state bodies (${mb(row.read.state_bytes)} MB). ` +
        `Peak RSS ${int(row.peak_rss_mb)} MB over a ${int(row.baseline_rss_mb)} MB baseline, V8 heap at most ` +
        `${int(row.peak_heap_used_mb)} MB used` +
        (row.cpu_seconds !== undefined ? `; ${row.cpu_seconds} CPU seconds` : "") +
        blocked(row) +
        ".",
    );
  }
  const builds = results.verifier?.instances.filter((built) => built.states >= 1_000_000) ?? [];
  for (const built of builds) {
    lines.push(
      `- **Building ${int(built.states)} states (${built.anchor})**: ${built.seconds} s, of which state data ` +
        `${built.phases.states_s} s (${int(built.states)} files), sending ${built.phases.send_s} s and waiting for ` +
        `receipts ${built.phases.chain_wait_s} s ` +
        `(${int(built.transactions)} transactions), trees and entries ${built.phases.proofs_s} s, pages ` +
        `${built.phases.pages_s} s; peak RSS ${int(built.peak_rss_mb)} MB` +
        (built.node
          ? `. The hardhat node spent ${built.node.cpu_s} CPU seconds on it (${int(built.transactions)} transactions), ` +
            `its RSS ${int(built.node.rss_mb)} MB after (peak ${int(built.node.peak_rss_mb)} MB).`
          : "."),
    );
  }
  return lines;
}

/**
 * The longest stretch without a memory sample (they are taken every 100 ms on a timer): the event loop was blocked
 * by synchronous work that long, and what the heap held before and after it.
 */
function blocked(row: VerifierRow): string {
  const samples = row.samples;
  if (!samples || samples.length < 2) return "";
  let worst = { gap: 0, at: 0, before: samples[0], after: samples[0] };
  for (let index = 1; index < samples.length; index += 1) {
    const gap = samples[index][0] - samples[index - 1][0];
    if (gap > worst.gap) worst = { gap, at: samples[index - 1][0], before: samples[index - 1], after: samples[index] };
  }
  if (worst.gap < 1_000) return "";
  return (
    `; the event loop was blocked for ${(worst.gap / 1000).toFixed(1)} s from ${(worst.at / 1000).toFixed(1)} s on ` +
    `(no memory sample; RSS ${worst.before[1]} → ${worst.after[1]} MB, heap ${worst.before[2]} → ${worst.after[2]} MB)`
  );
}
