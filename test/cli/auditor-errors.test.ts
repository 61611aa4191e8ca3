import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { expect } from "chai";
import { freePort } from "../../src/chain/node";
import { VERIFY_EXIT_CODES } from "../../src/cli/commands/verify";
import { type InstanceProtocol } from "../../src/protocol/schema";
import { startServer } from "../../src/server";
import { runCli, type CliResult } from "../helpers/cli-run";
import { runRefundRequest, setupIssuer, trustFlags, type TestIssuer } from "../helpers/issuer";
import { useHardhatNode } from "../helpers/node-process";

const ROOT = path.resolve(__dirname, "..", "..");

interface Step {
  id: string;
  status: string;
  code?: string;
  detail: string;
  problems: string[];
}
interface Run {
  input_form: string;
  reports: Array<{ verdict: string; exit_code: number; steps: Step[] }>;
  summary: { instances: number; valid: number; invalid: number; could_not_verify: number; exit_code: number };
}

/**
 * Issue 15, item 6: the auditor's commands, tried with the issuer's server stopped, the RPC down, a name without
 * records, a TLS failure and usage errors. One table of exit codes (0 valid, 1 invalid, 2 could not verify, 64
 * usage) holds for every input form: each row is run here with real inputs against a real chain and server.
 */
describe("the auditor's errors and exit codes (issue 15, item 6)", function () {
  this.timeout(300_000);
  const chain = useHardhatNode();
  let issuer: TestIssuer;
  let first: InstanceProtocol;
  let dir: string;
  let protocolFile: string;

  const trust = (): string[] => trustFlags(issuer);
  const urlOf = (instance: string): string => `${issuer.identity.record.url}/instances/${instance}/protocol`;
  const verify = (args: string[], globals: string[] = ["--rpc", chain.url]): Promise<CliResult> =>
    runCli([...globals, "verify", ...args, ...trust()]);
  const json = async (args: string[], globals: string[] = ["--rpc", chain.url]) => {
    const result = await verify(args, [...globals, "--json"]);
    return { ...result, run: JSON.parse(result.stdout) as Run };
  };
  const step = (run: Run, id: string, index = 0): Step => run.reports[index].steps.find((s) => s.id === id)!;

  before(async function () {
    issuer = await setupIssuer(chain.url, { label: "acme" });
    first = await runRefundRequest(issuer);
    await runRefundRequest(issuer);
    dir = fs.mkdtempSync(path.join(issuer.home.path(), "auditor-"));
    protocolFile = path.join(dir, "protocol.json");
    fs.writeFileSync(protocolFile, JSON.stringify(first));
  });
  after(async function () {
    await issuer?.close();
  });

  it("verify --help and docs/AUDITOR.md carry the one table of exit codes", async function () {
    const help = await runCli(["verify", "--help"]);
    expect(help.stdout).to.contain(VERIFY_EXIT_CODES).and.contain("are fetched from the issuer's server named in it");
    const auditor = fs.readFileSync(path.join(ROOT, "docs", "AUDITOR.md"), "utf8");
    for (const row of [
      "| `0`  | valid",
      "| `1`  | invalid",
      "| `2`  | could not verify",
      "| `3`  | valid as disclosed",
      "| `64` | usage",
    ]) {
      expect(auditor).to.contain(row);
    }
  });

  describe("the server up", function () {
    it("0: a URL, valid; progress on stderr in step order V0 … V9", async function () {
      const result = await verify([urlOf(first.instance_hash)]);
      expect(result.code, result.stdout + result.stderr).to.equal(0);
      const order = [...result.stderr.matchAll(/^ {2}(V\d) /gm)].map((match) => match[1]);
      expect(order).to.deep.equal(["V0", "V1", "V2", "V3", "V4", "V5", "V6", "V7", "V8", "V9"]);
      expect(result.stdout).to.contain("VALID").and.not.contain(" V0 PASS ("); // progress is not on stdout
    });

    it("0: an ENS name listing two instances ends with the summary line", async function () {
      const result = await verify(["acme.test"]);
      expect(result.code, result.stderr).to.equal(0);
      expect(result.stdout.trimEnd().split("\n").pop()).to.equal("2 instances: 2 valid, 0 invalid, 0 could not verify");
      expect(result.stderr).to.contain("(1 of 2)").and.contain("(2 of 2)");
    });

    it("0: a protocol file, and the report says its data came from the issuer's server", async function () {
      const result = await verify([protocolFile]);
      expect(result.code, result.stdout).to.equal(0);
      expect(result.stdout).to.contain(
        "is a protocol file: its model, input and states (and, for a head alone, its pages) were fetched from the issuer's",
      );
    });

    it("1: a protocol file with one state name altered is invalid", async function () {
      const altered = structuredClone(first);
      altered.instance_protocol[1].state_name += "x";
      const file = path.join(dir, "altered.json");
      fs.writeFileSync(file, JSON.stringify(altered));
      const { code, run } = await json([file]);
      expect(code).to.equal(1);
      expect(run.summary).to.include({ instances: 1, invalid: 1, exit_code: 1 });
    });

    it("2: a TLS failure (a plain TCP service where the https URL points)", async function () {
      const plain = net.createServer((socket) => socket.end("HTTP/1.1 200 OK\r\n\r\nnot TLS"));
      await new Promise<void>((resolve) => plain.listen(0, "127.0.0.1", resolve));
      try {
        const port = (plain.address() as net.AddressInfo).port;
        const { code, run } = await json([`https://127.0.0.1:${port}/instances/${first.instance_hash}/protocol`]);
        expect(code, JSON.stringify(run)).to.equal(2);
        expect(step(run, "V1")).to.include({ status: "error", code: "TLS_FAILED" });
      } finally {
        plain.close();
      }
    });

    it("2: an ENS name without a url record", async function () {
      const { code, run } = await json(["nobody.test"]);
      expect(code).to.equal(2);
      expect(step(run, "V1")).to.include({ status: "error", code: "VERIFY_INCOMPLETE" });
      expect(step(run, "V1").detail).to.contain('no "url" text record');
    });

    it("2: a mirror that can't be reached", async function () {
      const port = await freePort();
      const { code, run } = await json([`http://127.0.0.1:${port}/copy/instances/${first.instance_hash}/protocol`]);
      expect(code).to.equal(2);
      expect(run.input_form).to.equal("mirror");
      expect(step(run, "V1").status).to.equal("error");
    });

    it("2: no deployment for --network (and no --registries): the hint is the auditor's", async function () {
      const result = await runCli(["--rpc", chain.url, "--network", "nowhere", "--json", "verify", "acme.test"]);
      expect(result.code).to.equal(2);
      const v0 = (JSON.parse(result.stdout) as Run).reports[0].steps[0];
      expect(v0).to.include({ id: "V0", code: "DEPLOYMENT_MISSING" });
      expect(v0.problems.join("\n")).to.contain("--registries").and.not.contain("npm run deploy");
    });

    it("64: usage errors, before anything is read", async function () {
      const port = await freePort();
      const down = ["--rpc", `http://127.0.0.1:${port}`];
      expect((await verify(["not a target"], down)).code).to.equal(64);
      expect((await verify([urlOf(first.instance_hash), "--issuer", "0x12"], down)).code).to.equal(64);
      expect((await verify([urlOf(first.instance_hash), "--bogus"])).code).to.equal(64);
      expect((await runCli(["--rpc", chain.url, "verify", "acme.test", "--registries", "0x1,0x2"])).code).to.equal(64);
    });
  });

  describe("the RPC endpoint down", function () {
    let down: string[];
    before(async function () {
      down = ["--rpc", `http://127.0.0.1:${await freePort()}`];
    });

    for (const form of ["url", "ens-name", "file"] as const) {
      it(`2 for a ${form}: V0 RPC_UNREACHABLE, the hint names the endpoint and --rpc, not "start a local chain"`, async function () {
        const target = form === "url" ? urlOf(first.instance_hash) : form === "file" ? protocolFile : "acme.test";
        const { code, run } = await json([target], down);
        expect(code).to.equal(2);
        expect(run.input_form).to.equal(form);
        const v0 = step(run, "V0");
        expect(v0).to.include({ status: "error", code: "RPC_UNREACHABLE" });
        const hint = v0.problems.find((problem) => problem.startsWith("what to do: "))!;
        expect(hint).to.contain(down[1]).and.contain("from --rpc").and.not.contain("start a local chain");
        const text = await verify([target], down);
        expect(text.stdout).to.contain("what to do: check the RPC endpoint").and.contain("V1–V9  not run");
      });
    }

    it("watch: exit 2 with the auditor's hint", async function () {
      const result = await runCli([...down, "watch", urlOf(first.instance_hash), ...trust()]);
      expect(result.code).to.equal(2);
      expect(result.stderr).to.contain("RPC_UNREACHABLE").and.contain("from --rpc").and.not.contain("statetrail node");
    });

    it("an issuer's command keeps the issuer's hint (start a local chain)", async function () {
      // The issuer's own deployment record (a fresh clone has no deployments/localhost): only the RPC is down.
      const result = await runCli([...down, "--home", issuer.home.path(), "identity", "show"], {
        STATETRAIL_DEPLOYMENTS_DIR: issuer.deploymentsDir,
      });
      expect(result.stderr).to.contain("RPC_UNREACHABLE");
      expect(result.stderr).to.contain("statetrail node");
    });
  });

  describe("the issuer's server stopped", function () {
    before(async function () {
      await issuer.server.close();
    });
    after(async function () {
      issuer.server = await startServer({ home: issuer.home, port: issuer.server.port, log: () => undefined });
    });

    for (const form of ["url", "ens-name", "file"] as const) {
      it(`2 for a ${form}: one coded finding SERVER_UNREACHABLE naming the server and what to do`, async function () {
        const target = form === "url" ? urlOf(first.instance_hash) : form === "file" ? protocolFile : "acme.test";
        const { code, run } = await json([target]);
        expect(code, JSON.stringify(run)).to.equal(2);
        expect(run.summary).to.include({ could_not_verify: 1, exit_code: 2 });
        const v1 = step(run, "V1");
        expect(v1).to.include({ status: "error", code: "SERVER_UNREACHABLE" });
        expect(v1.detail)
          .to.contain(`cannot reach the issuer's server ${issuer.identity.record.url.replace(/\/$/, "")}`)
          .and.contain("connection refused")
          .and.contain("Is the issuer's server running? Check the URL");
        const text = await verify([target]);
        expect(text.code).to.equal(2);
        expect(text.stdout).not.to.contain("ECONNREFUSED");
        expect(text.stdout.match(/Is the issuer's server running\?/g), text.stdout).to.have.length(1);
        if (form === "file") {
          // The chain's part runs (V0, V7, V8): only what needs the server could not be checked.
          expect(step(run, "V8").status).to.equal("pass");
          expect(step(run, "V4")).to.include({ status: "error", code: "SERVER_UNREACHABLE" });
        } else {
          expect(text.stdout.match(/^SKIP /gm), text.stdout).to.have.length(1); // one line, not nine
          expect(text.stdout).to.contain("V0, V2–V9  not run: no protocol to verify (see V1)");
        }
      });
    }
  });
});
