import path from "node:path";
import fs from "node:fs";
import { int } from "./common";
import { type BenchResults } from "./index";

type Cell = string | number;

function table(head: string[], rows: Cell[][], align: Array<"l" | "r"> = []): string {
  const line = (cells: Cell[]): string => `| ${cells.map(String).join(" | ")} |`;
  const rule = `| ${head.map((_, i) => (align[i] === "r" ? "---:" : "---")).join(" | ")} |`;
  return [line(head), rule, ...rows.map(line)].join("\n");
}

/** BENCHMARKS.md: the machine, then one table per part, then the goals. */
export function renderMarkdown(results: BenchResults): string {
  const m = results.machine;
  const out: string[] = [
    "# statetrail benchmarks",
    "",
    `Written by \`npm run bench\` (scripts/bench/) on ${results.generated_at.replace("T", " ").replace(/\.\d+Z$/, " UTC")} ` +
      `in ${results.seconds} s, from one run on a local \`hardhat node\` process (automine). Raw figures: BENCHMARKS.json.`,
    "",
    table(
      ["CPU", "cores", "RAM", "OS", "Node", "Hardhat", "solc", "load average at start"],
      [[m.cpu, m.cores, `${m.ram_gib} GiB`, m.os, m.node, m.hardhat, m.solc, m.load_average]],
    ),
    "",
    "Speed figures depend on the machine and on what else runs on it (the load average above); gas figures do not.",
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

  if (results.verifier) {
    const v = results.verifier;
    out.push(
      "",
      "## 3. Verifier time and peak RSS",
      "",
      "Genuine instances of a Map model registered 1,000 states per transaction (registerStates, or a Merkle root " +
        "and terminateAnchored for batch), their state data in the issuer's data directory. Each verification runs " +
        "in a process of its own against the node; state bodies are read by a file-backed fetcher that serves the " +
        "data directory as the issuer's server does (the network is not measured), 8 at a time. The process runs " +
        "the verifier compiled to JavaScript (`node`), or through ts-node as `bin/statetrail.js` does (`ts-node`: " +
        "the TypeScript compiler is loaded too). Peak RSS is the process's (`process.resourceUsage().maxRSS`); the " +
        "baseline is its RSS before verifying (Node and the modules loaded). V2 (ENS) is skipped; V9 " +
        "(conformance) is off unless said.",
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
          "baseline RSS (MB)",
        ],
        v.rows.map((row) => [
          int(row.states),
          row.anchor,
          row.conformance ? "on" : "off",
          row.runtime,
          row.protocol_mb,
          row.verdict,
          `**${row.seconds}**`,
          row.steps,
          `**${int(row.peak_rss_mb)}**`,
          int(row.baseline_rss_mb),
        ]),
        ["r", "l", "l", "l", "r", "l", "r", "l", "r", "r"],
      ),
      "",
      "Building the instances (state data, transactions, signed protocol):",
      "",
      table(
        ["states", "anchoring", "transactions", "protocol (MB)", "seconds"],
        v.instances.map((built) => [
          int(built.states),
          built.anchor,
          int(built.transactions),
          Math.round((built.protocolBytes / 2 ** 20) * 10) / 10,
          built.seconds,
        ]),
        ["r", "l", "r", "r", "r"],
      ),
    );
  }

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

  out.push(
    "",
    "## What bounds these figures",
    "",
    "- **Local-engine throughput** is bounded by the interpreter (aws-local-stepfunctions enters the states of the " +
      "Map in the same thread as the tracker); the replay rows show what the tracker itself sustains.",
    "- **per-state** on an automining node is one block per transaction: each state costs the node a block, a " +
      "receipt and a block read. Pipelining overlaps them (transactions are signed ahead and sent in nonce order).",
    "- **Verifier time** at large sizes goes to V8 (the signature: RFC 8785 canonical form of the whole protocol, " +
      "then keccak256 over it, in JavaScript) and V6 (every state body read, hashed, parsed and checked).",
    "- **Verifier memory** at 100,000 states: V6 streams the bodies (8 at a time; kept only for V9, within a budget), but the protocol is one " +
      "JSON document held in memory as objects, and the registry's events are decoded for the whole instance; the " +
      "peak also holds garbage from decoding the `eth_getLogs` response (ethers' UTF-8 decoder) and the canonical " +
      "payload of V8. A 100,000-state verification within 200 MB needs a protocol read in pages (entries streamed " +
      "from the document or served in ranges) and the events consumed as they are read.",
  );

  out.push(...loadTestSection());

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
    "## 5. Server under load",
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
