import "../../src/engine/polyfill";
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { Command } from "commander";
import { Wallet } from "ethers";
import { deployAll } from "../../src/chain/deploy";
import { devPrivateKey } from "../../src/chain/keys";
import { freePort, startNode, type LocalNode } from "../../src/chain/node";
import { connect } from "../../src/chain/provider";
import { clearNodeRpc, recordNodeRpc, rpcUrlFor } from "../../src/cli/context";
import { buildProgram } from "../../src/cli/main";
import { runCli, type CliResult } from "../helpers/cli-run";
import { useHardhatNode } from "../helpers/node-process";

const ROOT = path.resolve(__dirname, "..", "..");
const BIN = path.join(ROOT, "bin", "statetrail.js");
const PASSWORD = { STATETRAIL_PASSWORD: "test-password", STATETRAIL_FAST_KEYSTORE: "1" };

async function deployTo(rpcUrl: string, dir: string): Promise<void> {
  const provider = await connect({ rpcUrl, ensRegistry: null });
  try {
    await deployAll(new Wallet(devPrivateKey(0), provider), "localhost", { dir });
  } finally {
    provider.destroy();
  }
}

const tempDir = (prefix: string): string => fs.mkdtempSync(path.join(os.tmpdir(), prefix));

interface CliError {
  code: string;
  message: string;
  hint?: string;
}

function errorOf(result: CliResult): CliError {
  return (JSON.parse(result.stdout) as { error: CliError }).error;
}

/** Every command path of the program (`[]`, `["run"]`, `["identity", "init"]`, ...). */
function commandPaths(command: Command, prefix: string[] = []): string[][] {
  return [prefix, ...command.commands.flatMap((c) => commandPaths(c, [...prefix, c.name()]))];
}

/** The `$ ...` example lines of a help text, continuation lines (ending in `\`) joined. */
function examplesIn(help: string): string[] {
  const examples: string[] = [];
  const lines = help.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const match = /^\s*\$ (.*)$/.exec(lines[i]);
    if (!match) continue;
    let line = match[1].trimEnd();
    while (line.endsWith("\\") && i + 1 < lines.length) line = `${line.slice(0, -1).trimEnd()} ${lines[++i].trim()}`;
    // Text after a run of spaces is a comment ("$ statetrail demo      everything on the embedded defaults").
    examples.push(line.split(/\s{3,}/)[0]);
  }
  return examples;
}

/** Splits a command line as a POSIX shell would for these examples: quotes, no expansion. */
function shellSplit(line: string): string[] {
  const tokens: string[] = [];
  const pattern = /'([^']*)'|"([^"]*)"|(\S+)/g;
  for (let m = pattern.exec(line); m; m = pattern.exec(line)) tokens.push(m[1] ?? m[2] ?? m[3]);
  return tokens;
}

/** `statetrail` arguments of an example (env assignments and `npx` dropped); null for `npm run <script>`. */
function statetrailArgs(example: string): { args: string[] } | { script: string } {
  const tokens = shellSplit(example).filter(
    (t, i, all) => !(/^[A-Z_]+=/.test(t) && all.slice(0, i).every((p) => /^[A-Z_]+=/.test(p))),
  );
  if (tokens[0] === "npm" && tokens[1] === "run") return { script: tokens[2] };
  const start = tokens[0] === "npx" ? 1 : 0;
  expect(tokens[start], example).to.equal("statetrail");
  return { args: tokens.slice(start + 1) };
}

/** Help as a user reads it: `statetrail [command...] --help`. */
async function helpTexts(): Promise<Map<string, string>> {
  const texts = new Map<string, string>();
  for (const commandPath of commandPaths(buildProgram(async () => undefined))) {
    const result = await runCli([...commandPath, "--help"]);
    expect(result.code, commandPath.join(" ")).to.equal(0);
    texts.set(commandPath.join(" ") || "(top level)", result.stdout);
  }
  return texts;
}

describe("Issue 15: the first hour of a new issuer", function () {
  this.timeout(300_000);
  const chain = useHardhatNode();
  let deployments: string;
  let env: Record<string, string>;
  /** The in-process CLI with a data directory and the test chain. */
  const cli = (home: string, ...args: string[]): Promise<CliResult> =>
    runCli(["--home", home, "--rpc", chain.url, ...args], env);

  before(async function () {
    deployments = tempDir("statetrail-first-hour-deployments-");
    await deployTo(chain.url, deployments);
    env = { STATETRAIL_DEPLOYMENTS_DIR: deployments, ...PASSWORD };
  });

  describe("help examples (item 5)", function () {
    it("every example command line in --help parses, and every file it names exists", async function () {
      const texts = await helpTexts();
      const scripts = (JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as { scripts: object })
        .scripts;
      let count = 0;
      for (const [command, help] of texts) {
        for (const example of examplesIn(help)) {
          count += 1;
          const parsed = statetrailArgs(example);
          if ("script" in parsed) {
            expect(scripts, `${command}: ${example}`).to.have.property(parsed.script);
            continue;
          }
          for (const [i, token] of parsed.args.entries()) {
            if (/^[a-z0-9]+:\/\//.test(token) || token.startsWith("-") || token.startsWith("{")) continue;
            // What the example writes (--html report.html, --save-bundle b.json), and a file of the user's own (./protocol.json: the
            // protocol an auditor saved) are not the repository's.
            if (["--html", "--save-bundle"].includes(parsed.args[i - 1]) || token.startsWith("./")) continue;
            if (/^(examples|test|scripts|docs)\//.test(token) || /\.(json|js|ts|pem)$/.test(token)) {
              expect(fs.existsSync(path.join(ROOT, token)), `${command}: ${example} names ${token}`).to.equal(true);
            }
          }
          // Parsed by the real program, whose actions are not run: unknown commands and options are refused.
          const program = buildProgram(async () => undefined);
          const override = (c: Command): void => {
            c.exitOverride().configureOutput({ writeOut: () => undefined, writeErr: () => undefined });
            c.commands.forEach(override);
          };
          override(program);
          let refused: unknown;
          await program.parseAsync(["node", "statetrail", ...parsed.args]).catch((error: unknown) => (refused = error));
          expect(refused, `${command}: ${example}`).to.equal(undefined);
        }
      }
      expect(count).to.be.at.least(10);
    });

    it("the cheap examples run for real against a local chain: identity init, model hash and deploy, run", async function () {
      const home = tempDir("statetrail-first-hour-examples-");
      const seen = new Set<string>();
      const examples: string[][] = [];
      for (const help of (await helpTexts()).values()) {
        for (const example of examplesIn(help)) {
          const parsed = statetrailArgs(example);
          if ("script" in parsed || seen.has(parsed.args.join(" "))) continue;
          seen.add(parsed.args.join(" "));
          examples.push(parsed.args);
        }
      }
      // One identity per data directory: the first `identity init` example makes it, then the rest run with it.
      const init = examples.find((args) => args[0] === "identity" && args[1] === "init");
      expect(init).to.not.equal(undefined);
      const ran: string[] = [];
      const cheap = [
        init!,
        ...examples.filter((args) => args[0] === "model"),
        ...examples.filter((args) => args[0] === "run"),
        ...examples.filter((args) => args[0] === "identity" && args[1] === "show"),
      ];
      for (const args of cheap) {
        const result = await cli(home, ...args);
        expect(result.code, `statetrail ${args.join(" ")}\n${result.stderr}\n${result.stdout}`).to.equal(0);
        ran.push(args.slice(0, 2).join(" "));
      }
      expect(ran).to.include.members([
        "identity init",
        "model hash",
        "model deploy",
        "run examples/order-fulfilment.asl.json",
      ]);
    });
  });

  describe("an issuer's data directory", function () {
    let home: string;
    let port: number;
    before(async function () {
      home = tempDir("statetrail-first-hour-home-");
      port = await freePort();
      const init = await cli(home, "identity", "init", "--port", String(port), "--ens-label", "first-hour");
      expect(init.code, init.stderr).to.equal(0);
    });

    it("run of the order example without --input: the failure's error, cause and the protocol URL (item 5)", async function () {
      const args = ["run", "examples/order-fulfilment.asl.json", "--handlers", "examples/order-fulfilment.handlers.js"];
      const text = await cli(home, ...args, "--skip-waits");
      expect(text.code, text.stderr).to.equal(0);
      expect(text.stdout).to.match(/^failed: \d+ states registered$/m);
      expect(text.stdout).to.match(/^error: \S+/m);
      expect(text.stdout).to.match(/^cause: .+/m);
      expect(text.stdout).to.match(
        new RegExp(`^protocol: https://localhost:${port}/instances/[0-9a-f]{64}/protocol$`, "m"),
      );
      const json = await cli(home, "--json", ...args, "--skip-waits");
      const result = JSON.parse(json.stdout) as { status: string; error: { error: string; cause: string | null } };
      expect(result.status).to.equal("failed");
      expect(result.error.error).to.be.a("string").and.not.equal("");
      expect(result.error.cause).to.be.a("string");
    });

    it("model deploy of a JSONata model: warned at deploy time that the local engine refuses it (item 8)", async function () {
      const jsonata = await cli(home, "model", "deploy", "examples/jsonata-greeting.asl.json");
      expect(jsonata.code, jsonata.stderr).to.equal(0);
      expect(jsonata.stderr).to.match(
        /warning: .*jsonata-greeting\.asl\.json uses \d+ features the local engine refuses/,
      );
      expect(jsonata.stderr).to.include("ASL_UNSUPPORTED").and.include("--engine aws");
      expect(jsonata.stderr).to.include("/QueryLanguage");
      const plain = await cli(home, "model", "deploy", "examples/refund-request.asl.json");
      expect(plain.code, plain.stderr).to.equal(0);
      expect(plain.stderr).to.not.include("warning:");
    });

    it("the RPC endpoint `statetrail node --port` records is used without --rpc (item 11)", async function () {
      // The test's own deployments folder, never the repository's.
      const saved = process.env.STATETRAIL_DEPLOYMENTS_DIR;
      process.env.STATETRAIL_DEPLOYMENTS_DIR = deployments;
      recordNodeRpc("localhost", chain.url);
      try {
        const shown = await runCli(["--home", home, "--json", "identity", "show"], env);
        expect(shown.code, shown.stdout).to.equal(0);
        expect(rpcUrlFor({ network: "localhost", rpc: "http://127.0.0.1:1" })).to.equal("http://127.0.0.1:1");
      } finally {
        clearNodeRpc("localhost");
        if (saved === undefined) delete process.env.STATETRAIL_DEPLOYMENTS_DIR;
        else process.env.STATETRAIL_DEPLOYMENTS_DIR = saved;
      }
      expect(fs.existsSync(path.join(deployments, "localhost", "node.json"))).to.equal(false);
    });

    it("serve --port other than the registered URL's: refused, with the command that changes the registration (item 4)", async function () {
      const other = await freePort();
      const result = await cli(home, "--json", "serve", "--port", String(other));
      expect(result.code).to.equal(64);
      const error = errorOf(result);
      expect(error.code).to.equal("INVALID_ARGUMENT");
      expect(error.message).to.include(`--port ${other} is not where the registered URL points`);
      expect(error.message).to.include(`https://localhost:${port}`);
      expect(error.hint).to.include(
        `statetrail --home ${home} --rpc ${chain.url} identity init --force --host localhost --port ${other} --ens-label first-hour`,
      );
    });

    it("the registered port in use: the hint frees it or changes the registration, never suggests another --port (item 4)", async function () {
      const squatter = net.createServer();
      await new Promise<void>((resolve) => squatter.listen(port, "localhost", resolve));
      try {
        const result = await cli(home, "--json", "serve", "--no-timeline");
        expect(result.code).to.equal(64);
        const error = errorOf(result);
        expect(error.message).to.include("EADDRINUSE");
        expect(error.hint).to.include(`another process listens on port ${port}`).and.include("stop it");
        expect(error.hint).to.include("identity init --force");
        expect(error.hint).to.not.match(/choose another port/);
      } finally {
        await new Promise<void>((resolve) => squatter.close(() => resolve()));
      }
    });
  });

  it("a restarted local chain: run, serve and identity refuse the data directory with one way out, which works (item 3)", async function () {
    const nodePort = await freePort();
    const rpc = `http://127.0.0.1:${nodePort}`;
    const dir = tempDir("statetrail-first-hour-restart-deployments-");
    const restartEnv = { STATETRAIL_DEPLOYMENTS_DIR: dir, ...PASSWORD };
    const at = (home: string, ...args: string[]): Promise<CliResult> =>
      runCli(["--home", home, "--rpc", rpc, ...args], restartEnv);
    const runArgs = ["run", "examples/refund-request.asl.json", "--input", "examples/refund-request.input.json"];
    const handlers = ["--handlers", "examples/refund-request.handlers.js"];
    let node: LocalNode = await startNode({ hostname: "127.0.0.1", port: nodePort });
    try {
      await deployTo(rpc, dir);
      const home = tempDir("statetrail-first-hour-restart-home-");
      const serverPort = String(await freePort());
      const init = await at(home, "identity", "init", "--port", serverPort, "--ens-label", "restarted");
      expect(init.code, init.stderr).to.equal(0);
      const chainRecord = JSON.parse(fs.readFileSync(path.join(home, "chain.json"), "utf8")) as {
        genesis_hash: string;
      };
      expect(chainRecord.genesis_hash).to.match(/^0x[0-9a-f]{64}$/);
      expect((await at(home, ...runArgs, ...handlers)).code).to.equal(0);
      // A data directory from before chain.json: its certificate registration is what ties it to a chain.
      const legacy = tempDir("statetrail-first-hour-legacy-");
      fs.cpSync(home, legacy, { recursive: true });
      fs.rmSync(path.join(legacy, "chain.json"));

      // The chain restarts (same chain id, a new genesis block) and `statetrail node` deploys again.
      await node.stop();
      node = await startNode({ hostname: "127.0.0.1", port: nodePort });
      await deployTo(rpc, dir);

      let hint: string | undefined;
      for (const args of [[...runArgs, ...handlers], ["serve"], ["identity", "show"]]) {
        const result = await at(home, "--json", ...args);
        expect(result.code, `${args.join(" ")}: ${result.stdout}`).to.equal(69);
        const error = errorOf(result);
        expect(error.code).to.equal("WRONG_CHAIN");
        expect(error.message).to.include(`the data directory ${home} belongs to another chain`);
        expect(error.message).to.include(chainRecord.genesis_hash);
        hint ??= error.hint;
        expect(error.hint).to.equal(hint);
      }
      const legacyError = errorOf(await at(legacy, "--json", "identity", "show"));
      expect(legacyError.code).to.equal("WRONG_CHAIN");
      expect(legacyError.message).to.match(
        /certificate was registered in transaction 0x[0-9a-f]{64}, which this chain does not have/,
      );

      // The way out, done as written: set the directory aside, make the identity again on this chain.
      const way = /start again on this chain: mv (\S+) (\S+) && statetrail (.+)$/.exec(hint!);
      expect(way, hint).to.not.equal(null);
      expect(way![1]).to.equal(home);
      fs.renameSync(way![1], way![2]);
      expect(way![3]).to.equal(
        `--home ${home} --rpc ${rpc} identity init --host localhost --port ${serverPort} --ens-label restarted`,
      );
      const again = await runCli(shellSplit(way![3]), restartEnv);
      expect(again.code, again.stderr).to.equal(0);
      const run = await at(home, "--json", ...runArgs, ...handlers);
      expect(run.code, run.stderr).to.equal(0);
      expect((JSON.parse(run.stdout) as { status: string }).status).to.equal("failed"); // RefundWindowExpired
    } finally {
      await node.stop();
    }
  });

  it("demo without --home removes its temporary data directory, keystore included (item 11)", async function () {
    const tmp = tempDir("statetrail-first-hour-tmpdir-");
    const chainPort = await freePort();
    const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [BIN, "--json", "demo", "--chain-port", String(chainPort)], {
        cwd: ROOT,
        env: { ...process.env, TMPDIR: tmp },
      });
      let stderr = "";
      child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
      child.stdout.resume();
      child.on("close", (code) => resolve({ code, stderr }));
    });
    expect(result.code, result.stderr).to.equal(0);
    expect(result.stderr).to.match(/data in .*statetrail-demo-\w+, removed at the end/);
    expect(fs.readdirSync(tmp).filter((name) => name.startsWith("statetrail-demo-"))).to.deep.equal([]);
  });
});
