/**
 * `npm run bench:startup [-- runs]`: how fast the CLI starts (issue 14), measured side by side in one run on this
 * machine, each figure the median of `runs` (default 9) interleaved runs:
 *
 *   - `node -e 0` (the floor), `statetrail --help`, `statetrail verify --help`, a usage error: wall time and peak
 *     RSS of the child process (/usr/bin/time -f %M);
 *   - on the demo's instance (a `statetrail demo --keep-serving` started here): `statetrail verify <url>` from start
 *     to exit, the same verification done in this process by the library (`verifyProtocol`, modules already loaded),
 *     and `statetrail watch <url>`'s time to its first line on stdout and to its first per-state line; then the
 *     CLI's and the library's verification through an RPC endpoint 50 ms away (a delaying forwarder), with their
 *     RPC round trips;
 *   - the auditor's install: the tarball of `npm pack`, and its `npm install --omit=dev` into an empty folder.
 *
 * Writes BENCHMARKS-startup.md (and says so when BENCHMARKS.md does not link it; that file is not written here).
 * Runs the compiled CLI (bin/statetrail.js → dist/): `npm run bench:startup` builds first.
 */
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import * as prettier from "prettier";

const ROOT = path.resolve(__dirname, "..");
const BIN = path.join(ROOT, "bin", "statetrail.js");
const RUNS = Number(process.argv[2] ?? 9);
const CHAIN_PORT = Number(process.env.BENCH_CHAIN_PORT ?? 18_645);
/**
 * The children's cache folder ($XDG_CACHE_HOME): this checkout's own. V8's code cache of a bundle replaces the cache
 * of any other build of it in its folder (src/cli/code-cache.ts), so in a shared one the runs of another checkout's
 * build (another worktree benchmarking at the same time) would keep replacing this one's, and its runs compile anew.
 */
const CACHE_HOME = path.join(
  os.tmpdir(),
  `statetrail-bench-cache-${createHash("sha256").update(ROOT).digest("hex").slice(0, 12)}`,
);
process.env.XDG_CACHE_HOME = CACHE_HOME;

interface Sample {
  ms: number;
  rssMb: number;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** One child process: wall time around it, peak RSS from /usr/bin/time. */
function measure(args: string[], env: NodeJS.ProcessEnv = {}): Sample & { status: number | null } {
  const rssFile = path.join(os.tmpdir(), `statetrail-bench-rss-${process.pid}`);
  const started = process.hrtime.bigint();
  const result = spawnSync("/usr/bin/time", ["-f", "%M", "-o", rssFile, process.execPath, ...args], {
    cwd: ROOT,
    stdio: ["ignore", "ignore", "ignore"],
    env: { ...process.env, ...env },
  });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  const kb = Number(fs.readFileSync(rssFile, "utf8").trim().split("\n").pop());
  fs.rmSync(rssFile, { force: true });
  return { ms, rssMb: kb / 1024, status: result.status };
}

/**
 * `statetrail --json verify`: its wall time, and the time its verification took inside it (the report's step
 * durations, which add up to the verification's wall time).
 */
function measureInside(args: string[]): { ms: number; insideMs: number } {
  const started = process.hrtime.bigint();
  const result = spawnSync(process.execPath, [BIN, "--json", ...args], { cwd: ROOT, encoding: "utf8" });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (result.status !== 0) throw new Error(`statetrail --json verify exited with ${result.status}: ${result.stderr}`);
  const run = JSON.parse(result.stdout) as { reports: Array<{ steps: Array<{ durationMs: number }> }> };
  return { ms, insideMs: run.reports[0].steps.reduce((sum, step) => sum + step.durationMs, 0) };
}

/** Starts `statetrail demo --keep-serving` and resolves with its protocol URL once it serves. */
async function startDemo(): Promise<{ url: string; stop: () => Promise<void> }> {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-bench-startup-"));
  const child = spawn(
    process.execPath,
    [BIN, "--home", home, "--json", "demo", "--chain-port", String(CHAIN_PORT), "--keep-serving"],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, STATETRAIL_PASSWORD: "bench" } },
  );
  let stdout = "";
  let stderr = "";
  // A demo that serves but whose result can't be read is stopped (SIGINT stops its chain too), never left behind.
  const url = await new Promise<string>((resolve, reject) => {
    // Serving (stderr) and the result (stdout, JSON) arrive on two pipes in either order.
    const check = () => {
      if (!stderr.includes("press Ctrl-C to stop")) return;
      let parsed: { protocol_url: string };
      try {
        parsed = JSON.parse(stdout) as { protocol_url: string };
      } catch {
        return; // stdout not complete yet
      }
      if (typeof parsed.protocol_url === "string") resolve(parsed.protocol_url);
      else reject(new Error(`the demo's result has no protocol_url: ${stdout}`));
    };
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      check();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
      check();
    });
    child.on("exit", (code) => reject(new Error(`demo exited with ${code}:\n${stderr}`)));
  }).catch((error: unknown) => {
    if (child.exitCode === null) child.kill("SIGINT");
    throw error;
  });
  return {
    url,
    stop: async () => {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGINT");
      await exited;
      fs.rmSync(home, { recursive: true, force: true });
    },
  };
}

/** Milliseconds the remote RPC endpoint's forwarder waits before passing on each request (one round trip's time). */
const REMOTE_RPC_DELAY_MS = 50;

/**
 * An RPC endpoint `delayMs` away: a forwarder to the local chain, in a process of its own (its timers never wait on
 * this process's work), that holds each HTTP request `delayMs` before passing it on and counts them (one request,
 * one round trip; a JSON-RPC batch is one request).
 */
async function startRemoteRpc(
  target: string,
  delayMs: number,
): Promise<{ url: string; requests: () => Promise<number>; stop: () => Promise<void> }> {
  const script = `
    const http = require("node:http");
    let count = 0;
    const server = http.createServer((request, response) => {
      const chunks = [];
      request.on("data", (chunk) => chunks.push(chunk));
      request.on("end", () => setTimeout(() => {
        count += 1;
        const upstream = http.request(${JSON.stringify(target)}, { method: "POST", headers: { "content-type": "application/json" } });
        upstream.on("response", (answer) => { response.writeHead(answer.statusCode, { "content-type": "application/json" }); answer.pipe(response); });
        upstream.on("error", () => response.destroy());
        upstream.end(Buffer.concat(chunks));
      }, ${delayMs}));
    });
    server.listen(0, "127.0.0.1", () => process.send({ port: server.address().port }));
    process.on("message", (message) => { if (message === "count") { process.send({ count }); count = 0; } });
  `;
  const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "ignore", "inherit", "ipc"] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once("message", (message: { port: number }) => resolve(message.port));
    child.once("exit", (code) => reject(new Error(`the RPC forwarder exited with ${code}`)));
  });
  return {
    url: `http://127.0.0.1:${port}`,
    requests: () =>
      new Promise<number>((resolve) => {
        child.once("message", (message: { count: number }) => resolve(message.count));
        child.send("count");
      }),
    stop: async () => {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill();
      await exited;
    },
  };
}

/**
 * `statetrail watch`: milliseconds from spawn to its first line on stdout (whatever it is), that line, and to its
 * first per-state line (`published  #0`, the first state of the catch-up).
 */
async function watchFirstLine(args: string[]): Promise<{ ms: number; line: string; stateMs: number }> {
  const started = process.hrtime.bigint();
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  const first = await new Promise<{ ms: number; line: string; stateMs: number }>((resolve, reject) => {
    let buffered = "";
    let line: { ms: number; line: string } | undefined;
    const onData = (chunk: Buffer) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      buffered += chunk.toString();
      const newline = buffered.indexOf("\n");
      if (newline >= 0) line ??= { ms, line: buffered.slice(0, newline) };
      if (line && / published +#0 /.test(buffered)) resolve({ ...line, stateMs: ms });
    };
    child.stdout.on("data", onData);
    child.on("exit", (code) => reject(new Error(`watch exited with ${code} before printing its first state`)));
  });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGKILL");
  await exited;
  return first;
}

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

/** Packs the package (without running prepare: dist as built) and installs the tarball as an auditor would. */
function packageSizes(): {
  filename: string;
  tarball: number;
  unpacked: number;
  files: number;
  installed: number;
  packages: number;
} {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-bench-pack-"));
  try {
    const npm = (args: string[], cwd: string): string => {
      const result = spawnSync("npm", args, { cwd, encoding: "utf8" });
      if (result.status !== 0) throw new Error(`npm ${args.join(" ")}: ${result.stderr}`);
      return result.stdout;
    };
    const [packed] = JSON.parse(
      npm(["pack", "--ignore-scripts", "--json", "--pack-destination", work], ROOT),
    ) as Array<{
      filename: string;
      size: number;
      unpackedSize: number;
      entryCount: number;
    }>;
    const app = path.join(work, "app");
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, "package.json"), JSON.stringify({ name: "app", private: true }));
    npm(["install", "--omit=dev", "--no-audit", "--no-fund", path.join(work, packed.filename)], app);
    const du = spawnSync("du", ["-sb", path.join(app, "node_modules")], { encoding: "utf8" });
    const lock = JSON.parse(fs.readFileSync(path.join(app, "package-lock.json"), "utf8")) as {
      packages: Record<string, unknown>;
    };
    return {
      filename: packed.filename,
      tarball: packed.size,
      unpacked: packed.unpackedSize,
      files: packed.entryCount,
      installed: Number(du.stdout.split(/\s/)[0]),
      packages: Object.keys(lock.packages).filter((key) => key.startsWith("node_modules/")).length,
    };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const nodeVersion = process.version;
  const load = os.loadavg()[0].toFixed(2);
  const rows: Array<{ name: string; args: string[] }> = [
    { name: "`node -e 0`", args: ["-e", "0"] },
    { name: "`statetrail --help`", args: [BIN, "--help"] },
    { name: "`statetrail verify --help`", args: [BIN, "verify", "--help"] },
    { name: "`statetrail bogus` (usage error, exit 64)", args: [BIN, "bogus"] },
    {
      name: "loading the verifier's modules: `node -e 'require(\"./dist/src/verify\")'`",
      args: ["-e", `require(${JSON.stringify(path.join(ROOT, "dist", "src", "verify"))})`],
    },
  ];
  const samples = new Map<string, Sample[]>(rows.map((row) => [row.name, []]));
  // One untimed run of each first: it writes V8's code cache for that command (the figures are with it warm).
  for (const row of rows) measure(row.args);
  for (let i = 0; i < RUNS; i++) {
    for (const row of rows) samples.get(row.name)!.push(measure(row.args));
  }
  const floor = median(samples.get(rows[0].name)!.map((s) => s.ms));
  const startup = rows.map((row) => {
    const ms = median(samples.get(row.name)!.map((s) => s.ms));
    const rssMb = median(samples.get(row.name)!.map((s) => s.rssMb));
    return { name: row.name, ms, rssMb, ratio: ms / floor };
  });
  for (const row of startup) console.error(`${row.name}: ${row.ms.toFixed(0)} ms, ${row.rssMb.toFixed(1)} MB`);

  console.error(`starting the demo (chain on port ${CHAIN_PORT})…`);
  const demo = await startDemo();
  const verifyCli: Sample[] = [];
  const verifyNoCache: Sample[] = [];
  const verifyUnbundled: Sample[] = [];
  const work: number[] = [];
  const inside: Array<{ ms: number; insideMs: number }> = [];
  const watch: Array<{ ms: number; line: string; stateMs: number }> = [];
  const remote = {
    cli: [] as number[],
    cliRequests: [] as number[],
    work: [] as number[],
    workRequests: [] as number[],
  };
  try {
    const rpc = `http://127.0.0.1:${CHAIN_PORT}`;
    const target = ["--rpc", rpc, "verify", demo.url];
    const first = measure([BIN, ...target]);
    if (first.status !== 0) throw new Error(`statetrail verify ${demo.url} exited with ${first.status}`);
    // The same verification through the library in this process, its modules loaded by a first call.
    /* eslint-disable @typescript-eslint/no-require-imports */
    const lib = require(path.join(ROOT, "dist", "src", "index.js")) as typeof import("../src/index");
    const net = require(
      path.join(ROOT, "dist", "src", "net", "pinned-fetch.js"),
    ) as typeof import("../src/net/pinned-fetch");
    /* eslint-enable @typescript-eslint/no-require-imports */
    const verifyOnce = async (retry = true, rpcUrl = rpc): Promise<number> => {
      // Every call opens its own connections to the issuer's server, as a CLI run does: none kept from the last.
      net.closePinnedConnections();
      const started = process.hrtime.bigint();
      // A pooled keep-alive connection the node has just closed fails the call ("other side closed"): once more.
      const report = await lib.verifyProtocol({ url: demo.url, rpcUrl }).catch((error: unknown) => {
        if (retry) return null;
        throw error;
      });
      if (report === null) return verifyOnce(false, rpcUrl);
      if (report.verdict !== "valid") throw new Error(`library verification: ${report.verdict}`);
      return Number(process.hrtime.bigint() - started) / 1e6;
    };
    await verifyOnce();
    for (let i = 0; i < RUNS; i++) {
      verifyCli.push(measure([BIN, ...target]));
      inside.push(measureInside(target));
      verifyNoCache.push(measure([BIN, ...target], { STATETRAIL_CODE_CACHE: "0" }));
      verifyUnbundled.push(measure([BIN, ...target], { STATETRAIL_BUNDLE: "0" }));
      work.push(await verifyOnce());
      watch.push(await watchFirstLine(["--rpc", rpc, "watch", demo.url]));
    }
    // The same two through an RPC endpoint REMOTE_RPC_DELAY_MS away, as a testnet's is.
    console.error(`the same through an RPC endpoint ${REMOTE_RPC_DELAY_MS} ms away…`);
    const remoteRpc = await startRemoteRpc(rpc, REMOTE_RPC_DELAY_MS);
    try {
      const remoteTarget = ["--rpc", remoteRpc.url, "verify", demo.url];
      measure([BIN, ...remoteTarget]);
      await verifyOnce(true, remoteRpc.url);
      await remoteRpc.requests();
      for (let i = 0; i < RUNS; i++) {
        remote.cli.push(measure([BIN, ...remoteTarget]).ms);
        remote.cliRequests.push(await remoteRpc.requests());
        remote.work.push(await verifyOnce(true, remoteRpc.url));
        remote.workRequests.push(await remoteRpc.requests());
      }
    } finally {
      await remoteRpc.stop();
    }
  } finally {
    await demo.stop();
  }
  // Other processes on the machine slow the children and this process unevenly: said with the figures.
  const loadAfter = os.loadavg()[0].toFixed(2);
  console.error("npm pack, npm install --omit=dev into an empty folder…");
  const pkg = packageSizes();
  const verifyMs = median(verifyCli.map((s) => s.ms));
  // The CLI's wall time over the verification inside it, run by run (its startup and loading are the rest).
  const insideRatio = median(inside.map((run) => run.ms / run.insideMs));
  const insideMs = median(inside.map((run) => run.insideMs));
  const verifyNoCacheMs = median(verifyNoCache.map((s) => s.ms));
  const verifyUnbundledMs = median(verifyUnbundled.map((s) => s.ms));
  const workMs = median(work);
  // No CLI can take less than Node's start plus the work: the ratio's floor on this machine.
  const floorRatio = (startup[0].ms + workMs) / workMs;
  const remoteCliMs = median(remote.cli);
  const remoteWorkMs = median(remote.work);
  const watchMs = median(watch.map((w) => w.ms));
  const watchStateMs = median(watch.map((w) => w.stateMs));
  const help = startup[1];
  const verifyHelp = startup[2];
  const verdict = (met: boolean) => (met ? "met" : "**not met**");
  const ms = (value: number) => `${Math.round(value)} ms`;

  const markdown = [
    "# CLI startup (issue 14)",
    "",
    `Written by \`npm run bench:startup\` (scripts/bench-startup.ts) on ${new Date()
      .toISOString()
      .replace("T", " ")
      .replace(/\.\d+Z$/, " UTC")}, ` +
      `Node ${nodeVersion}, ${os.cpus().length} CPUs, load average ${load} at start and ${loadAfter} after the demo's ` +
      `runs. Every figure is the median of ${RUNS} ` +
      "runs, interleaved, in one run of the script; the CLI is the built one: `bin/statetrail.js` runs the bundle " +
      "`dist/statetrail.cjs` (scripts/build-cli.js; ethers in `dist/vendor-ethers.cjs`, loaded when first needed; " +
      "the ASL interpreter embedded in it as text, compiled as a script of its own when V9's modules load) " +
      "through V8's code cache, which the first, untimed run of each command writes to a cache folder of this checkout's own " +
      `(\`${CACHE_HOME}\`: in a folder shared with another build, that build's runs would replace it; ` +
      "src/cli/code-cache.ts; compiled code only). Wall " +
      "time is measured around the child process; peak RSS is `/usr/bin/time`'s maximum resident set size.",
    "",
    ...(Math.max(Number(load), Number(loadAfter)) > os.cpus().length
      ? [
          `**The machine was busy** (load average ${load} at start and ${loadAfter} after, on ${os.cpus().length} ` +
            "CPUs: other processes ran): every wall time here is slower than on an idle machine, the verification " +
            "work's included, and the ratios can differ from an idle machine's.",
          "",
        ]
      : []),
    "| command | wall time | × `node -e 0` | peak RSS |",
    "| --- | ---: | ---: | ---: |",
    ...startup.map((row) => `| ${row.name} | ${ms(row.ms)} | ${row.ratio.toFixed(2)} | ${row.rssMb.toFixed(1)} MB |`),
    "",
    "On the demo's instance (`statetrail demo --keep-serving`: a local `hardhat node`, the HTTPS server):",
    "",
    "| | wall time |",
    "| --- | ---: |",
    `| \`statetrail verify <url>\`, start to exit | ${ms(verifyMs)} |`,
    `| the same without V8's code cache (\`STATETRAIL_CODE_CACHE=0\`) | ${ms(verifyNoCacheMs)} |`,
    `| the same from the modules of \`dist/src/\`, as before the bundle (\`STATETRAIL_BUNDLE=0\`) | ${ms(verifyUnbundledMs)} |`,
    `| the same verification by the library in a warm process (\`verifyProtocol\`) | ${ms(workMs)} |`,
    `| the verification inside \`statetrail --json verify <url>\` (its steps' durations; the CLI's wall time is ${insideRatio.toFixed(2)} × this) | ${ms(insideMs)} |`,
    `| \`node -e 0\` plus the verification work: the least any CLI can take (${floorRatio.toFixed(2)} × the work) | ${ms(startup[0].ms + workMs)} |`,
    `| \`statetrail watch <url>\`, start to its first line (stdout) | ${ms(watchMs)} |`,
    `| \`statetrail watch <url>\`, start to its first per-state line (\`published #0\`) | ${ms(watchStateMs)} |`,
    "",
    `Through an RPC endpoint ${REMOTE_RPC_DELAY_MS} ms away (a forwarder in a process of its own holds each HTTP ` +
      `request ${REMOTE_RPC_DELAY_MS} ms before passing it to the demo's chain, as a testnet's endpoint is some tens ` +
      "of milliseconds away; a JSON-RPC batch is one request, one round trip):",
    "",
    "| | wall time | RPC round trips | × the verification work |",
    "| --- | ---: | ---: | ---: |",
    `| \`statetrail verify <url>\`, start to exit | ${ms(remoteCliMs)} | ${median(remote.cliRequests)} | ${(remoteCliMs / remoteWorkMs).toFixed(2)} |`,
    `| the same verification by the library in a warm process | ${ms(remoteWorkMs)} | ${median(remote.workRequests)} | 1.00 |`,
    "",
    "**The verification work** is the fourth row of the first table and the second of the other: the library's `verifyProtocol` on the same URL and RPC endpoint " +
      "in this (the benchmark's) process, its modules loaded and a first call made before the timed ones, so that " +
      "it holds neither loading nor first-run cost; every step runs, V9 replays the run, nothing is cached across " +
      "calls but Node's compiled code (the connections to the issuer's server a call keeps alive, one TLS handshake per " +
      "connection rather than per request, are closed before the next). `verify` is its startup (Node, the CLI's bundle, then ethers' bundle and the " +
      "steps' modules, loaded while V1's request for the protocol, sent first, is in flight; the ASL interpreter for " +
      "V9, bundled without the Lambda client, credential providers and ASL validator it requires but statetrail " +
      "never calls, is loaded a piece at a time while the steps wait for the chain and the server; the S3 client " +
      "only for mirrors, the Merkle tree builder and the ASL validator not at all) plus the work done for the first " +
      "time in a fresh process (code optimised on first use; compiled, unless V8's code cache has it). Across runs " +
      "only that compiled code is kept: every step runs and V9 replays in every run. `watch` prints its first line once the protocol's head is " +
      "fetched (what it watches, as served), before the chain's and verifier's modules are loaded; then every state " +
      "from the first in order (the per-state row), while the verification runs. " +
      "No CLI can take less than `node -e 0` plus the verification work: that row is the floor of the goal's ratio " +
      "on this machine. The verification inside the CLI is the same work done once in a fresh process (its code run " +
      "the first time, from V8's code cache): what the CLI adds beyond it is Node's start and the loading of modules " +
      "before the verification begins.",
    "",
    `watch's first line: \`${watch[0]?.line.replace(/`/g, "'").slice(0, 200)}\``,
    "",
    "The auditor's install: `npm pack` (dist as built), then `npm install --omit=dev` of the tarball into an empty " +
      "folder (test/package/pack.test.ts checks that it verifies there and holds no Hardhat or solc).",
    "",
    "| | |",
    "| --- | ---: |",
    `| tarball (\`${pkg.filename}\`) | ${mb(pkg.tarball)} |`,
    `| the package unpacked (${pkg.files} files) | ${mb(pkg.unpacked)} |`,
    `| installed: node_modules with its dependencies (${pkg.packages} packages; file bytes, \`du -sb\`) | ${mb(pkg.installed)} |`,
    "",
    "| goal | target | measured | |",
    "| --- | --- | --- | --- |",
    `| \`statetrail --help\` time | ≤ 3 × \`node -e 0\` | ${help.ratio.toFixed(2)} × | ${verdict(help.ratio <= 3)} |`,
    `| \`statetrail --help\` peak RSS | ≤ 80 MB | ${help.rssMb.toFixed(1)} MB | ${verdict(help.rssMb <= 80)} |`,
    `| \`statetrail verify --help\` time | ≤ 3 × \`node -e 0\` | ${verifyHelp.ratio.toFixed(2)} × | ${verdict(verifyHelp.ratio <= 3)} |`,
    `| \`statetrail verify --help\` peak RSS | ≤ 80 MB | ${verifyHelp.rssMb.toFixed(1)} MB | ${verdict(verifyHelp.rssMb <= 80)} |`,
    `| \`verify\` of the demo instance | ≤ 2 × the verification work | ${(verifyMs / workMs).toFixed(2)} × (floor ${floorRatio.toFixed(2)} ×) | ${verdict(verifyMs <= 2 * workMs)} |`,
    `| \`watch\`'s first line | ≤ 1 s after start | ${ms(watchMs)} | ${verdict(watchMs <= 1000)} |`,
    "",
  ].join("\n");
  const file = path.join(ROOT, "BENCHMARKS-startup.md");
  const options = (await prettier.resolveConfig(file)) ?? {};
  fs.writeFileSync(file, await prettier.format(markdown, { ...options, filepath: file }));

  // BENCHMARKS.md is not this script's to write: it only says when that file does not link this one.
  const benchmarks = path.join(ROOT, "BENCHMARKS.md");
  if (fs.existsSync(benchmarks) && !fs.readFileSync(benchmarks, "utf8").includes("BENCHMARKS-startup.md")) {
    console.error("note: BENCHMARKS.md does not link BENCHMARKS-startup.md");
  }
  process.stdout.write(markdown);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
