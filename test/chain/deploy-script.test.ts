import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import type { AddressInfo } from "node:net";
import { expect } from "chai";
import { loadDeployment } from "../../src/chain/deployments";
import { REGISTRY_NAMES, verifyRegistryCode } from "../../src/chain/contracts";
import { REPO_ROOT } from "../../src/chain/node";
import { connect } from "../../src/chain/provider";
import { useHardhatNode } from "../helpers/node-process";

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `npm run deploy -- --network <network>`, i.e. `hardhat run scripts/deploy.ts`, as a child process. */
function runDeploy(network: string, env: Record<string, string>): Promise<RunResult> {
  const hardhat = path.join(REPO_ROOT, "node_modules", "hardhat", "internal", "cli", "bootstrap.js");
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  delete childEnv.HARDHAT_NETWORK;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [hardhat, "run", "--no-compile", "scripts/deploy.ts", "--network", network], {
      cwd: REPO_ROOT,
      env: childEnv,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c) => (stdout += c));
    child.stderr.on("data", (c) => (stderr += c));
    child.once("error", reject);
    child.once("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

/** An HTTP server that records every request: a stand-in for the Sepolia RPC that must not be contacted. */
async function recordingServer(): Promise<{ url: string; requests: string[]; close(): Promise<void> }> {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      requests.push(body);
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ jsonrpc: "2.0", id: 1, result: "0xaa36a7" }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

describe("chain: npm run deploy", function () {
  const chain = useHardhatNode();
  let dir: string;
  let rpc: Awaited<ReturnType<typeof recordingServer>>;
  let missing: RunResult;
  let local: RunResult;

  // The runs are independent child processes: run them side by side. (The refusal of development keys is
  // covered in keys.test.ts and, through deployAll on chain 11155111, in sepolia-mimic.test.ts.)
  before(async function () {
    this.timeout(60_000);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-deploy-script-"));
    rpc = await recordingServer();
    const sepolia = { SEPOLIA_RPC_URL: rpc.url, STATETRAIL_DEPLOYMENTS_DIR: dir };
    [missing, local] = await Promise.all([
      runDeploy("sepolia", { ...sepolia, SEPOLIA_PRIVATE_KEY: "" }),
      runDeploy("localhost", { STATETRAIL_RPC_URL: chain.url, STATETRAIL_DEPLOYMENTS_DIR: dir }),
    ]);
  });
  after(async function () {
    await rpc?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("stops on Sepolia without a key, saying how to set one, before contacting the RPC", function () {
    expect(missing.code, missing.stderr).to.equal(1);
    expect(missing.stderr).to.contain("KEY_MISSING");
    expect(missing.stderr).to.contain("npx hardhat vars set SEPOLIA_PRIVATE_KEY");
    expect(missing.stderr).to.contain("export SEPOLIA_PRIVATE_KEY=");
    expect(rpc.requests).to.deep.equal([]);
    expect(fs.existsSync(path.join(dir, "sepolia"))).to.equal(false);
  });

  it("deploys to a running node (--network localhost) and records it", async function () {
    expect(local.code, local.stderr + local.stdout).to.equal(0);
    expect(local.stdout).to.contain("ModelRegistry").and.contain("ENS registry");
    const deployment = loadDeployment("localhost", dir);
    expect(deployment.chainId).to.equal(31337);
    // The canonical CREATE2 addresses: the same as Sepolia's committed ones.
    const sepolia = loadDeployment("sepolia");
    for (const name of REGISTRY_NAMES) {
      expect(deployment.contracts[name].address).to.equal(sepolia.contracts[name].address);
    }
    expect(deployment.ens.deployedByStatetrail).to.equal(true);
    expect(fs.existsSync(path.join(dir, "localhost", "InstanceRegistry.json"))).to.equal(true);
    const provider = await connect({ rpcUrl: chain.url, expectedChainId: 31337 });
    try {
      await verifyRegistryCode(provider, deployment);
    } finally {
      provider.destroy();
    }
  });

  it("is idempotent: run again, it reports the registries as already there and keeps their transactions", async function () {
    const first = loadDeployment("localhost", dir);
    const again = await runDeploy("localhost", { STATETRAIL_RPC_URL: chain.url, STATETRAIL_DEPLOYMENTS_DIR: dir });
    expect(again.code, again.stderr + again.stdout).to.equal(0);
    expect(again.stdout.match(/already there/g)).to.have.length(3);
    const second = loadDeployment("localhost", dir);
    for (const name of REGISTRY_NAMES) {
      expect(second.contracts[name]).to.deep.equal(first.contracts[name]);
    }
  });
});
