/**
 * docs/SEPOLIA.md read as a new user would (issue 13, part 3): `~` in `--home` and `--private-key-env` with the
 * variable unset.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { isStatetrailError } from "../../src/errors";
import { REPO_ROOT } from "../../src/chain/node";
import { Home, expandHome } from "../../src/store/home";
import { privateKeyFromEnvironment } from "../../src/cli/commands/identity";

function cli(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(REPO_ROOT, "bin", "statetrail.js"), ...args], {
      cwd: REPO_ROOT,
      env,
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

describe("identity: the Sepolia guide's pitfalls", function () {
  let tmp: string;
  before(function () {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-guide-"));
  });
  after(function () {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it("expands ~ and ~/… in --home and refuses ~user", function () {
    expect(new Home("~/.statetrail-sepolia").root).to.equal(path.join(os.homedir(), ".statetrail-sepolia"));
    expect(new Home("~").root).to.equal(os.homedir());
    expect(expandHome("/abs/dir")).to.equal("/abs/dir");
    try {
      expandHome("~bob/x");
      expect.fail("expected INVALID_ARGUMENT");
    } catch (error) {
      expect(isStatetrailError(error, "INVALID_ARGUMENT"), String(error)).to.equal(true);
    }
  });

  it("--private-key-env with the variable unset fails with KEY_MISSING naming it, before anything is made", async function () {
    this.timeout(60_000);
    expect(() => privateKeyFromEnvironment("SEPOLIA_PRIVATE_KEY", {})).to.throw(/SEPOLIA_PRIVATE_KEY/);
    expect(privateKeyFromEnvironment("K", { K: " 0xabc " })).to.equal("0xabc");
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: tmp, STATETRAIL_PASSWORD: "pw" };
    delete env.SEPOLIA_PRIVATE_KEY;
    delete env.STATETRAIL_HOME;
    // As the guide writes it: the variable with a literal ~ that no shell expanded.
    const H = ["--network", "sepolia", "--home", "~/.statetrail-sepolia"];
    const result = await cli(
      [
        ...H,
        "identity",
        "init",
        "--host",
        "audit.acme.example",
        "--port",
        "8443",
        "--ens-name",
        "acme-audit.eth",
        "--private-key-env",
        "SEPOLIA_PRIVATE_KEY",
      ],
      env,
    );
    expect(result.code, result.stderr).to.not.equal(0);
    expect(result.stderr).to.contain("KEY_MISSING").and.contain("SEPOLIA_PRIVATE_KEY");
    expect(result.stderr).to.contain("npx hardhat vars get SEPOLIA_PRIVATE_KEY");
    expect(fs.existsSync(path.join(tmp, ".statetrail-sepolia", "keystore.json"))).to.equal(false);
    expect(fs.existsSync(path.join(REPO_ROOT, "~"))).to.equal(false);
  });
});
