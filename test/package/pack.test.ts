import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { freePort } from "../../src/chain/node";

const ROOT = path.resolve(__dirname, "..", "..");
const BIN = path.join(ROOT, "bin", "statetrail.js");

/**
 * The auditor's install (issue 14): `npm pack` of this repository installs into an empty folder with
 * `npm install --omit=dev`, without Hardhat or solc, and its `statetrail verify <url>` and `statetrail watch <url>`
 * verify the instance of a `statetrail demo --keep-serving` run from the repository (the issuer), trusting the
 * registries given by flags. Needs the npm registry (the package's dependencies are installed from it). The tarball
 * is packed from dist/ as built (`npm test` builds first), without running `prepare` again.
 */
describe("package: npm pack, npm install --omit=dev into an empty folder, verify and watch from there", function () {
  this.timeout(300_000);
  let demo: ChildProcessWithoutNullStreams | undefined;
  let work = "";
  let home = "";
  let url = "";
  let rpcUrl = "";

  before(async function () {
    expect(fs.existsSync(path.join(ROOT, "dist", "src", "cli", "main.js")), "dist is built (npm run build)").to.equal(
      true,
    );
    work = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-pack-"));
    home = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-pack-home-"));
    const chainPort = await freePort();
    rpcUrl = `http://127.0.0.1:${chainPort}`;
    demo = spawn(
      process.execPath,
      [BIN, "--home", home, "--json", "demo", "--chain-port", String(chainPort), "--keep-serving"],
      { cwd: ROOT, env: { ...process.env, STATETRAIL_PASSWORD: "pack-test" } },
    );
    const child = demo;
    url = await new Promise<string>((resolve, reject) => {
      let stdout = "";
      let stderr = "";
      const check = () => {
        if (!stderr.includes("press Ctrl-C to stop")) return;
        try {
          resolve((JSON.parse(stdout) as { protocol_url: string }).protocol_url);
        } catch {
          // the result on stdout is not complete yet
        }
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
    });
  });

  after(async function () {
    if (demo && demo.exitCode === null) {
      const exited = new Promise((resolve) => demo!.once("exit", resolve));
      demo.kill("SIGINT");
      await exited;
    }
    for (const dir of [work, home]) if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("installs without Hardhat or solc, and its statetrail verifies (valid) and watches the demo's instance", function () {
    const npm = (args: string[], cwd: string) => {
      const result = spawnSync("npm", args, { cwd, encoding: "utf8", timeout: 240_000 });
      expect(result.status, `npm ${args.join(" ")}:\n${result.stdout}\n${result.stderr}`).to.equal(0);
      return result.stdout;
    };
    const packed = JSON.parse(npm(["pack", "--ignore-scripts", "--json", "--pack-destination", work], ROOT)) as Array<{
      filename: string;
      files: Array<{ path: string }>;
    }>;
    const files = packed[0].files.map((f) => f.path);
    expect(files).to.include.members([
      "bin/statetrail.js",
      "dist/src/cli/main.js",
      "dist/src/index.d.ts",
      // the bundled CLI bin/statetrail.js runs (scripts/build-cli.js)
      "dist/statetrail.cjs",
      "dist/vendor-ethers.cjs",
    ]);
    expect(files.filter((f) => /^(src|test|contracts|scripts)\//.test(f))).to.deep.equal([]);

    const app = path.join(work, "auditor");
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, "package.json"), JSON.stringify({ name: "auditor", private: true }));
    npm(["install", "--omit=dev", "--no-audit", "--no-fund", path.join(work, packed[0].filename)], app);
    for (const absent of ["hardhat", "solc", "@nomicfoundation/hardhat-toolbox", "ts-node"]) {
      expect(fs.existsSync(path.join(app, "node_modules", absent)), `${absent} is not installed`).to.equal(false);
    }

    const deployment = JSON.parse(
      fs.readFileSync(path.join(ROOT, "deployments", "localhost", "deployment.json"), "utf8"),
    ) as { chainId: number; ens: { registry: string }; contracts: Record<string, { address: string }> };
    const c = deployment.contracts;
    const trust = [
      "--registries",
      [c.ModelRegistry.address, c.CertificateRegistry.address, c.InstanceRegistry.address].join(","),
      "--chain-id",
      String(deployment.chainId),
      "--ens-registry",
      deployment.ens.registry,
    ];
    const statetrail = path.join(app, "node_modules", ".bin", "statetrail");
    const run = (args: string[]) =>
      spawnSync(statetrail, ["--rpc", rpcUrl, ...args], { cwd: app, encoding: "utf8", timeout: 60_000 });

    const verify = run(["verify", url, ...trust]);
    expect(verify.status, `verify:\n${verify.stdout}\n${verify.stderr}`).to.equal(0);
    expect(verify.stdout).to.contain("VALID");

    const watch = run(["watch", url, ...trust, "--timeout", "30"]);
    expect(watch.status, `watch:\n${watch.stdout}\n${watch.stderr}`).to.equal(0);
    expect(watch.stdout).to.match(/terminated succeeded, final verdict valid/);
  });
});
