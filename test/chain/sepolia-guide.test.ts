/**
 * docs/SEPOLIA.md, checked line by line (issue 13): every command of the guide's `sh checked` blocks runs, as
 * written and in order, through the real CLI (`statetrail` on the PATH is bin/statetrail.js, so `npm run build`
 * first; `npm run …` is npm) against a real `hardhat node` that mimics Sepolia: chain id 11155111, ENS at Sepolia's
 * addresses (test/helpers/sepolia-ens.ts), blocks every 250 ms, the registries deployed at their canonical
 * CREATE2 addresses by the guide's own `npm run deploy -- --network sepolia`. Each command must exit 0 and print
 * what the guide says it prints; the auditor's part (step 7) runs in an environment of its own holding only the
 * RPC URL, with the committed deployments/sepolia record (no address flags, no key).
 *
 * Only what must differ is substituted (SUBSTITUTIONS below, each required to apply): the values of the exported
 * variables, the host and port, $HOME, the S3 endpoint (environment only) and the `<instance_hash>` placeholder.
 * `npm run deploy` writes its record to a temporary STATETRAIL_DEPLOYMENTS_DIR instead of the committed
 * deployments/sepolia/, which the test compares it with. `sh manual` blocks are not run; each of their commands
 * must be one of MANUAL, and a shell block marked neither way, or a command in the prose that no block holds,
 * fails the test.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { Wallet, toBeHex, type JsonRpcProvider } from "ethers";
import S3rver from "s3rver";
import { loadDeployment } from "../../src/chain/deployments";
import { REGISTRY_NAMES } from "../../src/chain/contracts";
import { deployRegistries } from "../../src/chain/deploy";
import { ensContract, labelhash } from "../../src/chain/ens";
import { freePort } from "../../src/chain/node";
import { connect } from "../../src/chain/provider";
import { useHardhatNode } from "../helpers/node-process";
import { installSepoliaEns } from "../helpers/sepolia-ens";

const ROOT = path.resolve(__dirname, "..", "..");
const GUIDE = path.join(ROOT, "docs", "SEPOLIA.md");
const AUDITOR_HEADING = "## 7. Verify, as an auditor";

/** Commands of `sh manual` blocks, and why the test can't run them. */
const MANUAL: Record<string, string> = {
  "npm ci   # in the clone": "the test runs inside the clone, installed",
  "npx hardhat vars set SEPOLIA_PRIVATE_KEY": "interactive (asks for the value) and writes the user's Hardhat store",
  'export SEPOLIA_PRIVATE_KEY="$(npx hardhat vars get SEPOLIA_PRIVATE_KEY)"':
    "reads the user's Hardhat store; the checked block exports the key directly",
};

/** Words that start a command in the prose (`inline code`): each such span must be a command of some block. */
const COMMAND_WORDS = /^(statetrail|npm|npx|export|node)\s/;

interface GuideCommand {
  /** The command as written (continuation lines joined). */
  text: string;
  kind: "checked" | "manual";
  part: "issuer" | "auditor";
}

interface Guide {
  commands: GuideCommand[];
  /** Shell blocks with neither `checked` nor `manual` (line numbers). */
  unmarked: number[];
  /** `inline code` in the prose that reads as a command. */
  inline: string[];
}

function parseGuide(markdown: string): Guide {
  const lines = markdown.split("\n");
  const guide: Guide = { commands: [], unmarked: [], inline: [] };
  let part: GuideCommand["part"] = "issuer";
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.startsWith("## ")) part = line.trim() === AUDITOR_HEADING ? "auditor" : part;
    const fence = /^(\s*)```(\S*)\s*(\S*)\s*$/.exec(line);
    if (!fence) {
      for (const match of line.matchAll(/`([^`]+)`/g)) {
        if (COMMAND_WORDS.test(match[1])) guide.inline.push(match[1]);
      }
      continue;
    }
    const [, indent, lang, tag] = fence;
    const body: string[] = [];
    for (i++; i < lines.length && lines[i].trim() !== "```"; i++) body.push(lines[i].slice(indent.length));
    if (!["sh", "bash", "shell", "console"].includes(lang)) continue;
    if (tag !== "checked" && tag !== "manual") {
      guide.unmarked.push(i + 1 - body.length);
      continue;
    }
    const joined = body.join("\n").replace(/\\\n\s*/g, "");
    for (const text of joined.split("\n")) {
      if (text.trim() === "" || text.trim().startsWith("#")) continue;
      guide.commands.push({ text: text.trimEnd(), kind: tag, part });
    }
  }
  return guide;
}

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

function bash(script: string, options: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number }): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn("bash", ["-c", script], { cwd: options.cwd, env: options.env, detached: true });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        /* gone */
      }
      reject(new Error(`timed out after ${options.timeoutMs} ms: ${script}\n${stdout}\n${stderr}`));
    }, options.timeoutMs);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

async function waitForPort(port: number, timeoutMs: number, output: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (open) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`nothing listens on port ${port} after ${timeoutMs} ms:\n${output()}`);
}

describe("docs/SEPOLIA.md, every command run against the Sepolia mimic (real CLI processes)", function () {
  this.timeout(180_000);
  const chain = useHardhatNode({ chainId: 11155111 });
  const guide = parseGuide(fs.readFileSync(GUIDE, "utf8"));
  const password = "guide-test-password";
  const key = Wallet.createRandom();
  const name = "acme-audit.eth";
  const bucket = "audit-copies";
  const s3Credentials = { AWS_ACCESS_KEY_ID: "S3RVER", AWS_SECRET_ACCESS_KEY: "S3RVER", AWS_REGION: "us-east-1" };
  let provider: JsonRpcProvider;
  let tmp: string;
  let home: string;
  let work: string;
  let deployments: string;
  let port: number;
  let s3: S3rver;
  let s3Endpoint: string;
  let instanceHash: string | null = null;
  const background: ChildProcess[] = [];
  const backgroundOutput = new Map<ChildProcess, string>();
  const used = new Set<string>();

  /** What differs on the mimic; each entry must apply somewhere in the guide (checked at the end). */
  const substitutions = (): [string, RegExp, () => string][] => [
    [
      "the key's value",
      /^export SEPOLIA_PRIVATE_KEY=0x…(\s|$)/,
      () => `export SEPOLIA_PRIVATE_KEY=${key.privateKey}$1`,
    ],
    ["the RPC URL", /^export SEPOLIA_RPC_URL=https:\/\/…(\s|$)/, () => `export SEPOLIA_RPC_URL=${chain.url}$1`],
    ["the keystore password", /^export STATETRAIL_PASSWORD=…(\s|$)/, () => `export STATETRAIL_PASSWORD=${password}$1`],
    ["the host", /--host audit\.acme\.example --port 8443/, () => `--host 127.0.0.1 --port ${port}`],
    [
      "the instance hash placeholder",
      /<instance_hash>/,
      () => {
        if (instanceHash === null) throw new Error("no instance hash yet: `run` did not print its protocol URL");
        return instanceHash;
      },
    ],
  ];

  function substitute(command: string): string {
    let out = command;
    for (const [what, pattern, value] of substitutions()) {
      if (pattern.test(out)) {
        used.add(what);
        out = out.replace(pattern, value());
      }
    }
    return out;
  }

  /** The environment every command starts from: none of the caller's statetrail or Sepolia settings. */
  function baseEnv(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) {
      if (/^(SEPOLIA_|STATETRAIL_|AWS_|HARDHAT_VAR_)/.test(k)) continue;
      env[k] = v;
    }
    return {
      ...env,
      HOME: home,
      PATH: `${path.join(tmp, "bin")}${path.delimiter}${process.env.PATH}`,
      AWS_ENDPOINT_URL_S3: s3Endpoint,
      ...s3Credentials,
      // Hardhat's configuration variables live under the user's home: an empty one here (HOME is the temp dir).
    };
  }

  /** What each checked command must print (all patterns must match stdout + stderr). */
  function expectations(command: string): RegExp[] | "background" {
    const h = "([0-9a-f]{64})";
    if (/^export /.test(command)) return [];
    if (command === "npm run addresses -- --check") return [/deployments\/ matches the compiled registries/];
    if (command === "npm run deploy -- --network sepolia") {
      return REGISTRY_NAMES.map((n) => new RegExp(`${n}\\s+0x[0-9a-fA-F]{40} (deployed \\(block|already there)`));
    }
    if (/ identity init /.test(command)) {
      return [
        new RegExp(`issuer\\s+${key.address}`),
        new RegExp(`ENS name\\s+${name.replace(".", "\\.")}`),
        new RegExp(`server\\s+https://127\\.0\\.0\\.1:${port}`),
      ];
    }
    if (/ identity show$/.test(command)) return [new RegExp(key.address), new RegExp(name.replace(".", "\\."))];
    if (/ model deploy /.test(command)) return [new RegExp(`^${h}$`, "m")];
    if (/ run /.test(command)) return [new RegExp(`https://127\\.0\\.0\\.1:${port}/instances/${h}/protocol`)];
    if (/ serve(\s|$)/.test(command)) return "background";
    if (/ publish --mirror s3:\/\/audit-copies\/acme/.test(command)) {
      return [new RegExp(`s3://audit-copies/acme/instances/${h}/protocol`)];
    }
    if (/ verify /.test(command)) return [/^verdict: VALID: every required check passed \(exit 0\)$/m];
    throw new Error(`the test does not know what this command of the guide prints; add it: ${command}`);
  }

  before(async function () {
    this.timeout(120_000);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-guide-"));
    home = path.join(tmp, "home");
    work = path.join(tmp, "work");
    deployments = path.join(tmp, "deployments");
    for (const dir of [home, work, deployments, path.join(tmp, "bin")]) fs.mkdirSync(dir, { recursive: true });
    // `statetrail` as the guide writes it (after `npm link`): the clone's bin/statetrail.js.
    const shim = path.join(tmp, "bin", "statetrail");
    fs.writeFileSync(shim, `#!/bin/sh\nexec node ${JSON.stringify(path.join(ROOT, "bin", "statetrail.js"))} "$@"\n`);
    fs.chmodSync(shim, 0o755);
    // The guide's paths are relative to the clone; statetrail commands run in a folder of their own (report.html).
    fs.symlinkSync(path.join(ROOT, "examples"), path.join(work, "examples"));
    if (!fs.existsSync(path.join(ROOT, "dist", ".built"))) throw new Error("run `npm run build` first (dist/)");

    port = await freePort();
    const s3Port = await freePort();
    s3 = new S3rver({
      address: "127.0.0.1",
      port: s3Port,
      silent: true,
      directory: path.join(tmp, "s3"),
      configureBuckets: [{ name: bucket, configs: [] }],
    });
    await s3.run();
    s3Endpoint = `http://127.0.0.1:${s3Port}`;

    provider = await connect({ rpcUrl: chain.url, expectedChainId: 11155111 });
    const admin = Wallet.createRandom().connect(provider);
    const issuer = key.connect(provider);
    for (const account of [admin, issuer]) {
      await provider.send("hardhat_setBalance", [account.address, toBeHex(10n ** 20n)]);
    }
    const ens = await installSepoliaEns(provider, admin);
    // Step 4 (manual: the ENS app on Sepolia): the name, owned by the issuer's key, through the mimic's registrar.
    await (
      await ensContract("FIFSRegistrar", ens.fifsEth, issuer).register(labelhash("acme-audit"), key.address)
    ).wait();
    // Blocks every 250 ms from here on, as on a public chain.
    await provider.send("evm_setAutomine", [false]);
    await provider.send("evm_setIntervalMining", [250]);
  });

  after(async function () {
    // The servers write into tmp until they have exited: wait for that (SIGKILL after 10 s) before removing it.
    await Promise.all(
      background.map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise((resolve) => child.once("exit", resolve));
        const signal = (name: NodeJS.Signals) => {
          try {
            process.kill(-child.pid!, name);
          } catch {
            /* gone */
          }
        };
        signal("SIGTERM");
        const timer = setTimeout(() => signal("SIGKILL"), 10_000);
        await exited;
        clearTimeout(timer);
      }),
    );
    provider?.destroy();
    await s3?.close();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
  });

  it("marks every shell block checked or manual, lists every manual command, and holds every command of its prose", function () {
    expect(guide.unmarked, "shell blocks marked neither `sh checked` nor `sh manual` (lines)").to.deep.equal([]);
    const manual = guide.commands.filter((c) => c.kind === "manual").map((c) => c.text);
    expect(manual, "manual commands (MANUAL must list each, with why)").to.have.members(Object.keys(MANUAL));
    const all = guide.commands.map((c) => c.text.replace(/\s+#.*$/, ""));
    const stray = guide.inline.filter((span) => !all.some((c) => c === span || c.startsWith(`${span} `)));
    expect(stray, "commands in the prose that no block holds").to.deep.equal([]);
    expect(guide.commands.filter((c) => c.kind === "checked" && c.part === "auditor")).to.have.length.at.least(3);
  });

  for (const part of ["issuer", "auditor"] as const) {
    // The auditor's part starts from nothing the issuer set: its own environment (only what it exports) and home.
    const exports: string[] = [];
    for (const command of guide.commands.filter((c) => c.kind === "checked" && c.part === part)) {
      it(`${part}: ${command.text}`, async function () {
        const text = substitute(command.text);
        const expected = expectations(command.text);
        const env = baseEnv();
        if (part === "auditor") env.HOME = path.join(tmp, "auditor-home");
        fs.mkdirSync(env.HOME!, { recursive: true });
        const isNpm = /^npm /.test(text);
        // `npm run deploy` must not rewrite the committed deployments/sepolia/: its record goes to a temp folder.
        if (/^npm run deploy /.test(text)) env.STATETRAIL_DEPLOYMENTS_DIR = deployments;
        const script = [...exports, text].join("\n");
        if (part === "auditor") {
          // The auditor takes nothing from the issuer: no key, no registry address, only an RPC endpoint.
          expect(script).to.not.match(/SEPOLIA_PRIVATE_KEY|STATETRAIL_PASSWORD|--registries|0x[0-9a-fA-F]{40}/);
        }
        if (/^export /.test(text)) exports.push(text);
        if (expected === "background") {
          const child = spawn("bash", ["-c", script], { cwd: work, env, detached: true });
          background.push(child);
          backgroundOutput.set(child, "");
          const record = (chunk: Buffer) => backgroundOutput.set(child, backgroundOutput.get(child) + chunk.toString());
          child.stdout!.on("data", record);
          child.stderr!.on("data", record);
          await waitForPort(port, 60_000, () => backgroundOutput.get(child)!);
          expect(child.exitCode, backgroundOutput.get(child)).to.equal(null);
          return;
        }
        const ran = await bash(`set -e\n${script}`, { cwd: isNpm ? ROOT : work, env, timeoutMs: 170_000 });
        const output = `${ran.stdout}\n${ran.stderr}`;
        expect(ran.code, `exit code of ${text}\n${output}`).to.equal(0);
        for (const pattern of expected) expect(output, `${text} prints ${pattern}:\n${output}`).to.match(pattern);
        const url = /\/instances\/([0-9a-f]{64})\/protocol/.exec(ran.stdout);
        if (/ run /.test(text) && url) instanceHash = url[1];
        if (/^npm run deploy /.test(text)) {
          // What the guide's deploy recorded is the committed record: same addresses, code hashes and ENS.
          const recorded = loadDeployment("sepolia", deployments);
          const committed = loadDeployment("sepolia");
          for (const n of REGISTRY_NAMES) {
            expect(recorded.contracts[n].address).to.equal(committed.contracts[n].address);
            expect(recorded.contracts[n].codeHash).to.equal(committed.contracts[n].codeHash);
          }
          expect(recorded.ens).to.deep.equal(committed.ens);
        }
        if (/--html report\.html/.test(text)) {
          expect(fs.readFileSync(path.join(work, "report.html"), "utf8")).to.match(/<html/i);
        }
      });
    }
  }

  it("every substitution was needed: the guide still has each value the mimic replaces", function () {
    expect([...used].sort()).to.deep.equal(
      substitutions()
        .map(([what]) => what)
        .sort(),
    );
  });

  it("identity init on a name the key does not hold: unregistered fails before paying; another's names its owner", async function () {
    const stranger = Wallet.createRandom();
    await provider.send("hardhat_setBalance", [stranger.address, toBeHex(10n ** 19n)]);
    const env = {
      ...baseEnv(),
      HOME: path.join(tmp, "stranger-home"),
      SEPOLIA_RPC_URL: chain.url,
      STRANGER_KEY: stranger.privateKey,
      STATETRAIL_PASSWORD: password,
    };
    const init = (ens: string) =>
      bash(
        `statetrail --network sepolia identity init --host 127.0.0.1 --port ${port} --ens-name ${ens} --private-key-env STRANGER_KEY`,
        { cwd: work, env, timeoutMs: 120_000 },
      );
    const unregistered = await init("nobody-here.eth");
    expect(unregistered.code, unregistered.stderr).to.not.equal(0);
    expect(unregistered.stderr, unregistered.stderr).to.contain("error ENS_FAILED: nobody-here.eth is not registered");
    expect(unregistered.stderr, unregistered.stderr).to.contain(
      `what to do: register nobody-here.eth for ${stranger.address}`,
    );
    expect(await provider.getTransactionCount(stranger.address)).to.equal(0);
    // acme-audit.eth belongs to the issuer and points at it: the stranger can't make it point here, and is told so
    // (with the owner and what it must set) before paying for anything.
    const taken = await init(name);
    expect(taken.code, taken.stderr).to.not.equal(0);
    expect(taken.stderr, taken.stderr).to.match(/error ENS_FAILED: ENS does not link/);
    expect(taken.stderr, taken.stderr).to.contain(`${name} is owned by ${key.address}, not by this key`);
    expect(taken.stderr, taken.stderr).to.contain(`set addr to ${stranger.address}`);
    expect(await provider.getTransactionCount(stranger.address)).to.equal(0);
  });

  it("a look-alike at the trusted InstanceRegistry address: the auditor's verify fails V0 with DEPLOYMENT_CODE_MISMATCH", async function () {
    const committed = loadDeployment("sepolia");
    const target = committed.contracts.InstanceRegistry.address;
    const original = await provider.getCode(target);
    // A genuine InstanceRegistry deployed the ordinary way answers every call, but its code differs (its immutables).
    const funder = Wallet.createRandom().connect(provider);
    await provider.send("hardhat_setBalance", [funder.address, toBeHex(10n ** 20n)]);
    const plain = await deployRegistries(funder, "plain");
    const lookalike = await provider.getCode(plain.contracts.InstanceRegistry.address);
    expect(lookalike).to.not.equal(original);
    await provider.send("hardhat_setCode", [target, lookalike]);
    try {
      const env = { ...baseEnv(), HOME: path.join(tmp, "auditor-home"), SEPOLIA_RPC_URL: chain.url };
      const ran = await bash(`statetrail --network sepolia --json verify ${name}`, {
        cwd: work,
        env,
        timeoutMs: 120_000,
      });
      expect(ran.code, ran.stderr).to.equal(1);
      type Report = { verdict: string; steps: { id: string; status: string; code?: string; detail: string }[] };
      // One report, or (with several) a list of them, or a run holding `reports`: whichever the CLI prints.
      const parsed = JSON.parse(ran.stdout) as Report | Report[] | { reports: Report[] };
      const reports = Array.isArray(parsed) ? parsed : "reports" in parsed ? parsed.reports : [parsed];
      expect(reports.length, ran.stdout).to.be.at.least(1);
      const report = reports[0];
      expect(report.verdict).to.equal("invalid");
      const v0 = report.steps.find((s) => s.id === "V0")!;
      expect(v0.status, v0.detail).to.equal("fail");
      expect(v0.code).to.equal("DEPLOYMENT_CODE_MISMATCH");
      expect(v0.detail).to.contain(target).and.contain("look-alike contract");
    } finally {
      await provider.send("hardhat_setCode", [target, original]);
    }
  });
});
