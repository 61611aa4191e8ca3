import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import fc from "fast-check";
import * as local from "../../src/chain/local";
import { freePort } from "../../src/chain/node";
import { StatetrailError } from "../../src/errors";
import { runCli } from "../helpers/cli-run";
import { exampleModels, runs, watchUnhandledRejections, fuzzTimeout } from "./helpers";

/**
 * The CLI in-process on random argv: commands, flags and values in any order, files that are models, garbage,
 * too large, not regular, missing. Every run returns a documented exit code and never throws; none is 70
 * (INTERNAL: an error nobody coded). Nothing reaches a network: the RPC URL, S3 and AWS endpoints are dead
 * loopback ports, and starting a local chain (demo, node) is replaced by a coded failure.
 */

const DOCUMENTED = [0, 1, 2, 64, 65, 69, 75, 77];
const REPO = path.resolve(__dirname, "..", "..");

describe("fuzz: CLI argv", function () {
  this.timeout(fuzzTimeout());
  watchUnhandledRejections();
  let dir: string;
  let env: Record<string, string>;
  let files: string[];
  let dead: string;
  const original = local.ensureLocalChain;

  before(async function () {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-cli-fuzz-"));
    fs.mkdirSync(path.join(dir, "home"));
    const port = await freePort();
    dead = `http://127.0.0.1:${port}`;
    env = {
      STATETRAIL_HOME: path.join(dir, "home"),
      STATETRAIL_RPC_URL: dead,
      STATETRAIL_PASSWORD: "fuzz-password",
      AWS_ENDPOINT_URL: dead,
      AWS_ENDPOINT_URL_S3: dead,
      AWS_ENDPOINT_URL_SFN: dead,
      AWS_ACCESS_KEY_ID: "AKIAFUZZ",
      AWS_SECRET_ACCESS_KEY: "fuzz",
      AWS_REGION: "us-east-1",
      AWS_MAX_ATTEMPTS: "1",
    };
    const write = (name: string, bytes: Buffer | string): string => {
      const file = path.join(dir, name);
      fs.writeFileSync(file, bytes);
      return file;
    };
    const model = exampleModels()[0];
    files = [
      write("model.asl.json", model.bytes),
      write("broken.asl.json", model.bytes.subarray(0, 100)),
      write("latin1.json", Buffer.from([0x7b, 0x22, 0xe9, 0x22, 0x3a, 0x31, 0x7d])),
      write("deep.json", "[".repeat(50_000) + "]".repeat(50_000)),
      write("big.json", `{"a":"${"x".repeat(2 * 1024 * 1024)}"}`),
      write("empty.json", ""),
      write("input.json", '{"orderId":"o-1"}'),
      write("protocol.json", '{"protocol_version":2}'),
      write("cert.pem", "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"),
      path.join(dir, "home"),
      path.join(dir, "missing.json"),
      "/dev/zero",
      "/dev/null",
      path.join(REPO, "examples", "order-fulfilment.asl.json"),
    ];
    // demo and node would start a hardhat node: make that a coded failure instead.
    (local as { ensureLocalChain: typeof original }).ensureLocalChain = async () => {
      throw new StatetrailError("RPC_UNREACHABLE", "fuzz: no local chain is started");
    };
  });
  after(function () {
    (local as { ensureLocalChain: typeof original }).ensureLocalChain = original;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const hash = "9f597f9f029c7f39c347b22524f94725b307d057f2486f97e0ef560c0af76d4b";
  const valueArb = (): fc.Arbitrary<() => string> =>
    fc.oneof(
      fc.nat().map((i) => () => files[i % files.length]),
      fc
        .constantFrom(
          "",
          " ",
          "-1",
          "0",
          "1",
          "3.5",
          "1e309",
          "NaN",
          "99999999999999999999",
          "0x" + "12".repeat(20),
          hash,
          hash.toUpperCase(),
          "{}",
          '{"a":1}',
          "[".repeat(5000),
          "null",
          "https://127.0.0.1:1/instances/x/protocol",
          "http://127.0.0.1:1/x",
          "s3://bucket/prefix",
          "acme.test",
          "per-state",
          "batch",
          "local",
          "aws",
          "echo",
          "localhost",
          "sepolia",
          "../../etc",
          "--json",
          "-q",
          "%s%n",
          "\u0000",
          "é",
        )
        .map((v) => () => v),
      fc.string({ maxLength: 30 }).map((v) => () => v),
    );
  const RUN = ["--input", "--engine", "--handlers", "--task-handler", "--anchor", "--batch-size", "--batch-interval"];
  const VERIFY = ["--registries", "--chain-id", "--ens-registry", "--instance", "--s3-endpoint", "--html"];
  /** Each command with its positional arguments and the flags that take a value. */
  const COMMANDS: [string[], number, string[]][] = [
    [[], 0, []],
    [["model", "hash"], 1, []],
    [["model", "deploy"], 1, ["--engine", "--role-arn", "--region", "--endpoint"]],
    [["model"], 0, []],
    [["run"], 1, [...RUN, "--max-in-flight", "--confirmations", "--role-arn", "--region", "--endpoint"]],
    [["verify"], 1, VERIFY],
    [["watch"], 1, [...VERIFY.slice(0, 4), "--grace", "--poll", "--timeout"]],
    [["identity", "init"], 0, ["--host", "--port", "--ens-label", "--ens-name", "--cert", "--key", "--validity-days"]],
    [["identity", "show"], 0, []],
    [["identity", "rotate"], 0, ["--cert", "--key", "--validity-days"]],
    [["identity", "revoke"], 1, []],
    [["identity"], 0, []],
    [["serve"], 0, ["--host", "--port"]],
    [["publish"], 2, ["--mirror", "--endpoint", "--region"]],
    [["node"], 0, ["--port"]],
    [["demo"], 0, ["--model", "--input", "--handlers", "--chain-port", "--server-port"]],
    [["help"], 1, []],
    [["nope"], 0, []],
  ];
  const commandArb = fc.constantFrom(...COMMANDS);
  const SWITCHES: Record<string, string[]> = {
    verify: ["--no-ens", "--no-conformance", "--mirror"],
    watch: ["--no-ens"],
    run: ["--skip-waits"],
    "identity init": ["--force"],
    "identity rotate": ["--revoke-previous"],
    serve: ["--no-timeline"],
    publish: ["--path-style", "--no-path-style"],
    demo: ["--keep-serving"],
  };
  const flagArb = fc.constantFrom(
    "--input",
    "--engine",
    "--handlers",
    "--task-handler",
    "--anchor",
    "--batch-size",
    "--batch-interval",
    "--max-in-flight",
    "--confirmations",
    "--registries",
    "--chain-id",
    "--ens-registry",
    "--instance",
    "--grace",
    "--poll",
    "--timeout",
    "--mirror",
    "--endpoint",
    "--region",
    "--role-arn",
    "--host",
    "--port",
    "--ens-label",
    "--ens-name",
    "--cert",
    "--key",
    "--private-key-env",
    "--validity-days",
    "--network",
    "--rpc",
    "--chain-port",
    "--server-port",
    "--model",
    "--s3-endpoint",
    "--html",
    "--bogus",
  );
  const switchArb = fc.constantFrom(
    "--json",
    "-q",
    "--quiet",
    "--force",
    "--skip-waits",
    "--no-ens",
    "--no-conformance",
    "--mirror",
    "--revoke-previous",
    "--path-style",
    "--no-path-style",
    "--no-timeline",
    "--help",
    "-h",
    "-x",
  );
  const argvArb = fc
    .tuple(
      commandArb,
      fc.array(valueArb(), { minLength: 1, maxLength: 3 }),
      fc.array(fc.tuple(fc.nat(), fc.nat(9), flagArb, valueArb()), { maxLength: 3 }),
      fc.array(fc.tuple(fc.nat(), fc.nat(9), switchArb), { maxLength: 2 }),
      fc.array(fc.tuple(fc.constantFrom("--network", "--rpc", "--json", "-q"), valueArb()), { maxLength: 2 }),
      fc.boolean(),
      fc.nat(9),
    )
    .map(([[command, positionalCount, known], positionals, options, switches, globals, globalsFirst, extra]) => () => {
      // Mostly flags the command knows (so parsing gets past commander), sometimes any flag.
      const opts = options.flatMap(([pick, dice, any, value]) => [
        dice > 0 && known.length > 0 ? known[pick % known.length] : any,
        value(),
      ]);
      const ownSwitches = SWITCHES[command.join(" ")] ?? [];
      const flags = switches.map(([pick, dice, any]) =>
        dice > 0 && ownSwitches.length > 0 ? ownSwitches[pick % ownSwitches.length] : any,
      );
      const global = globals.flatMap(([flag, value]) =>
        flag === "--json" || flag === "-q" ? [flag] : [flag, value()],
      );
      const safe = ["--home", path.join(dir, "home"), ...global];
      const rest = [
        ...positionals.slice(0, positionalCount + (extra === 0 ? 1 : 0)).map((p) => p()),
        ...opts,
        ...flags,
      ];
      const argv = globalsFirst ? [...safe, ...command, ...rest] : [...command, ...rest, ...safe];
      // verify --html writes a report: only ever into the scratch directory.
      const html = argv.indexOf("--html");
      if (html >= 0) argv[html + 1] = path.join(dir, "report.html");
      return argv;
    });

  it("returns a documented exit code (never 70) and never throws", async function () {
    const codes = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(argvArb, async (makeArgv) => {
        const argv = makeArgv();
        let result;
        try {
          result = await runCli(argv, env);
        } catch (error) {
          expect.fail(`main(${JSON.stringify(argv)}) threw ${(error as Error).stack}`);
        }
        codes.set(result.code, (codes.get(result.code) ?? 0) + 1);
        if (process.env.STATETRAIL_FUZZ_VERBOSE === "2" && result.code === 64) {
          console.log("   ", JSON.stringify(argv).slice(0, 160), "→", result.stderr.split("\n")[0].slice(0, 100));
        }
        expect(
          DOCUMENTED,
          `${JSON.stringify(argv).slice(0, 300)} → ${result.code}\n${result.stderr.slice(0, 2000)}`,
        ).to.include(result.code);
      }),
      { numRuns: runs(600) },
    );
    if (process.env.STATETRAIL_FUZZ_VERBOSE) console.log("    exit codes:", Object.fromEntries(codes));
    expect(fs.readdirSync(REPO).filter((name) => name.startsWith("report"))).to.deep.equal([]);
  });

  it("model hash: any bytes in a file give the SHA-256 of those bytes (exit 0)", async function () {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), async (bytes) => {
        const file = path.join(dir, "random.asl.json");
        fs.writeFileSync(file, bytes);
        const result = await runCli(["model", "hash", file, "--json"], env);
        expect(result.code).to.equal(0);
        expect(result.stdout).to.contain(createHash("sha256").update(bytes).digest("hex"));
      }),
      { numRuns: runs(100) },
    );
  });

  it("as real processes: exit codes of a few hostile invocations", async function () {
    const cases: [string[], number][] = [
      [["model", "hash", "/dev/zero", "--bogus"], 64], // exited 1 before subcommands had the exit override
      [["model", "hash", files[3]], 0], // any bytes are hashed; validation is a warning
    ];
    const codes = await Promise.all(
      cases.map(
        ([argv]) =>
          new Promise<number | null>((resolve) => {
            const child = spawn(process.execPath, [path.join(REPO, "bin", "statetrail.js"), ...argv], {
              env: { ...process.env, ...env },
              stdio: "ignore",
            });
            child.on("exit", (code) => resolve(code));
          }),
      ),
    );
    expect(codes).to.deep.equal(cases.map(([, code]) => code));
  });
});
