import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { freePort } from "../../src/chain/node";

const ROOT = path.resolve(__dirname, "..", "..");
const BIN = path.join(ROOT, "bin", "statetrail.js");
const PASSWORD = "library-test-password";

/** The README's library example: the ```ts block after the `library-example` marker. */
function readmeExample(): string {
  const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
  const marker = readme.indexOf("<!-- library-example");
  expect(marker, "README.md has the library-example marker").to.be.greaterThan(0);
  const block = /```ts\n([\s\S]*?)```/.exec(readme.slice(marker));
  expect(block, "a ```ts block follows the marker").to.not.equal(null);
  return block![1];
}

/**
 * The README's example is compiled by tsc against the package as an application sees it (`import … from
 * "statetrail"` resolved through package.json's `exports` and `types`, node16 resolution, strict) and run as an
 * application would: as the issuer of a `statetrail demo --keep-serving` (its data directory, chain and HTTPS server),
 * it tracks a run, verifies it, and watches it. The package is the compiled one (dist/, built by `npm run build`,
 * which `npm test` runs first).
 */
describe("library: the README's example, compiled against the package's types and run", function () {
  this.timeout(180_000);
  let demo: ChildProcessWithoutNullStreams | undefined;
  let home = "";
  let work = "";
  let rpcUrl = "";

  before(async function () {
    expect(fs.existsSync(path.join(ROOT, "dist", "src", "index.d.ts")), "dist is built (npm run build)").to.equal(true);
    home = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-library-home-"));
    work = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-library-app-"));
    const chainPort = await freePort();
    rpcUrl = `http://127.0.0.1:${chainPort}`;
    demo = spawn(
      process.execPath,
      [BIN, "--home", home, "--json", "demo", "--chain-port", String(chainPort), "--keep-serving"],
      { cwd: ROOT, env: { ...process.env, STATETRAIL_PASSWORD: PASSWORD } },
    );
    const child = demo;
    await new Promise<void>((resolve, reject) => {
      let stderr = "";
      child.stderr.on("data", (chunk: Buffer) => {
        stderr += chunk.toString();
        if (stderr.includes("press Ctrl-C to stop")) resolve();
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
    for (const dir of [home, work]) if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("compiles with tsc (strict, node16 resolution through exports/types) and tracks, verifies and watches a run", function () {
    // The application: its own folder, `statetrail` in its node_modules (as `npm link statetrail` makes it).
    fs.mkdirSync(path.join(work, "node_modules"));
    fs.symlinkSync(ROOT, path.join(work, "node_modules", "statetrail"), "dir");
    fs.writeFileSync(path.join(work, "package.json"), JSON.stringify({ name: "app", private: true }));
    fs.writeFileSync(path.join(work, "example.ts"), readmeExample());
    fs.writeFileSync(
      path.join(work, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "es2022",
          module: "node16",
          moduleResolution: "node16",
          strict: true,
          outDir: "out",
          typeRoots: [path.join(ROOT, "node_modules", "@types")],
          types: ["node"],
        },
        files: ["example.ts"],
      }),
    );
    const tsc = spawnSync(process.execPath, [path.join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", work], {
      encoding: "utf8",
    });
    expect(tsc.status, `tsc:\n${tsc.stdout}${tsc.stderr}`).to.equal(0);

    // Run from the repository (the example names examples/…), as the demo's issuer, on the demo's chain.
    const run = spawnSync(process.execPath, [path.join(work, "out", "example.js")], {
      cwd: ROOT,
      encoding: "utf8",
      env: { ...process.env, STATETRAIL_HOME: home, STATETRAIL_RPC_URL: rpcUrl, STATETRAIL_PASSWORD: PASSWORD },
      timeout: 120_000,
    });
    expect(run.status, `example:\n${run.stdout}\n${run.stderr}`).to.equal(0);
    expect(run.stdout).to.match(/^succeeded: \d+ states, https:\/\/localhost:\d+\/instances\/[0-9a-f]{64}\/protocol$/m);
    expect(run.stdout).to.match(/valid/i);
    expect(run.stdout).to.match(/^verified$/m);
    expect(run.stdout).to.match(/^terminated$/m);
  });
});
