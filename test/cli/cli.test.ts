import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { sha256Hex } from "../../src/chain/hash";
import { freePort, findRunningNode } from "../../src/chain/node";
import { main } from "../../src/cli/main";
import { useHardhatNode } from "../helpers/node-process";

const ROOT = path.resolve(__dirname, "..", "..");
const BIN = path.join(ROOT, "bin", "statetrail.js");
/** Trusted registries given as flags, so these tests need no deployments/ record. */
const TRUST = [
  "--registries",
  "0x5FbDB2315678afecb367f032d93F642f64180aa3,0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512,0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",
  "--chain-id",
  "31337",
];

interface Captured {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI in-process, capturing what it writes. */
async function cli(...argv: string[]): Promise<Captured> {
  let stdout = "";
  let stderr = "";
  const out = process.stdout.write.bind(process.stdout);
  const err = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((chunk: string | Uint8Array) => (
    (stdout += chunk.toString()),
    true
  )) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => (
    (stderr += chunk.toString()),
    true
  )) as typeof process.stderr.write;
  try {
    const code = await main(["node", "statetrail", ...argv]);
    return { code, stdout, stderr };
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
  }
}

/** Runs bin/statetrail.js as a real process. */
function spawnCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Captured> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => (stdout += chunk));
    child.stderr.on("data", (chunk) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

describe("statetrail CLI", function () {
  this.timeout(120_000);

  it("prints help with examples and the exit codes", async function () {
    const result = await cli("--help");
    expect(result.code).to.equal(0);
    expect(result.stdout).to.contain("Examples:").and.contain("Exit codes").and.contain("RPC_UNREACHABLE");
  });

  it("rejects an unknown command with the usage exit code", async function () {
    expect((await cli("frobnicate")).code).to.equal(64);
  });

  it("hashes a model: SHA-256 of the exact bytes, as sha256sum would", async function () {
    const file = path.join(ROOT, "examples", "refund-request.asl.json");
    const result = await cli("model", "hash", file, "--json");
    expect(result.code).to.equal(0);
    const { createHash } = await import("node:crypto");
    const expected = createHash("sha256").update(fs.readFileSync(file)).digest("hex");
    expect(JSON.parse(result.stdout).model_hash).to.equal(expected);
  });

  it("hashes invalid ASL (the exact bytes) and warns with every problem's path", async function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-cli-"));
    const file = path.join(dir, "bad.asl.json");
    fs.writeFileSync(file, JSON.stringify({ StartAt: "A", States: { A: { Type: "Task", Next: "B" } } }));
    const result = await cli("model", "hash", file);
    expect(result.code).to.equal(0);
    expect(result.stdout).to.contain(sha256Hex(fs.readFileSync(file)));
    expect(result.stderr).to.contain("ASL_INVALID").and.contain("/States/A");
  });

  it("fails fast with RPC_UNREACHABLE when the chain is down: could not verify (exit 2)", async function () {
    const port = await freePort();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-cli-"));
    const result = await cli(
      "--home",
      dir,
      "--rpc",
      `http://127.0.0.1:${port}`,
      "--json",
      "verify",
      "acme.test",
      ...TRUST,
    );
    expect(result.code).to.equal(2);
    const v0 = JSON.parse(result.stdout).reports[0].steps[0];
    expect(v0).to.include({ id: "V0", code: "RPC_UNREACHABLE" });
    // Fast: ended by the refusal, not by waiting out the probe's deadline (no wall-clock bound on a busy machine).
    expect(v0.detail)
      .to.match(/connection refused/)
      .and.not.match(/no answer within/);
  });

  describe("against a chain that is not the deployment's", function () {
    const chain = useHardhatNode({ chainId: 11155111 });

    it("refuses with WRONG_CHAIN: could not verify (exit 2)", async function () {
      const result = await cli("--rpc", chain.url, "--json", "verify", "acme.test", ...TRUST);
      expect(result.code).to.equal(2);
      expect(JSON.parse(result.stdout).reports[0].steps[0]).to.include({ id: "V0", code: "WRONG_CHAIN" });
    });
  });

  it("`statetrail demo` runs everything on the embedded defaults, verifies valid, shows a confidential view, leaves nothing running", async function () {
    const chainPort = await freePort();
    const home = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-demo-test-"));
    const result = await spawnCli(["--home", home, "--json", "demo", "--chain-port", String(chainPort)]);
    expect(result.code, result.stderr).to.equal(0);
    const summary = JSON.parse(result.stdout);
    expect(summary.verdict).to.equal("valid");
    expect(summary.status).to.equal("succeeded");
    expect(summary.protocol_url).to.match(/^https:\/\/localhost:\d+\/instances\/[0-9a-f]{64}\/protocol$/);
    // Step 7: private, one auditor granted the outcomes only: anonymous refused, the auditor's verdict never plain valid.
    expect(summary.confidential).to.include({ anonymous: "could-not-verify", auditor: "valid-as-disclosed" });
    expect(result.stderr)
      .to.match(/AUTH_REQUIRED/)
      .and.match(/--fields outcome/);
    expect(await findRunningNode(`http://127.0.0.1:${chainPort}`)).to.equal(null);
  });
});
