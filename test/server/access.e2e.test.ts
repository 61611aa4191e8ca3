import { expect } from "chai";
import { Wallet } from "ethers";
import fs from "node:fs";
import https from "node:https";
import path from "node:path";
import { createEngine } from "../../src/engine";
import { buildSignInMessage } from "../../src/identity/siwe";
import { loadModel } from "../../src/model/load";
import { PinnedAgent } from "../../src/net/pinned-fetch";
import { readPolicy } from "../../src/store/access";
import { runCli } from "../helpers/cli-run";
import { setupIssuer, trustFlags, type TestIssuer } from "../helpers/issuer";
import { type VerificationReport } from "../../src/verify/types";
import { useHardhatNode } from "../helpers/node-process";

const EXAMPLES = path.resolve(__dirname, "..", "..", "examples");

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * Access control on a real chain with a real identity: `run --public`, `grant` to an ENS name resolved on the chain,
 * and a sign-in whose origin and chain the server takes from its identity.
 */
describe("access control end to end (identity, chain, ENS, CLI)", function () {
  this.timeout(120_000);
  const node = useHardhatNode();
  let issuer: TestIssuer;

  before(async function () {
    this.timeout(120_000);
    issuer = await setupIssuer(node.url, { label: "guarded" });
  });
  after(async () => issuer?.close());

  const cli = (...argv: string[]) =>
    runCli(["--home", issuer.home.root, "--network", "localhost", "--rpc", node.url, ...argv], {
      STATETRAIL_DEPLOYMENTS_DIR: issuer.deploymentsDir,
      STATETRAIL_FAST_KEYSTORE: "1",
    });

  const request = (method: string, pathname: string, headers: Record<string, string> = {}, body?: string) =>
    new Promise<Answer>((resolve, reject) => {
      const req = https.request(
        {
          host: "localhost",
          port: issuer.server.port,
          method,
          path: pathname,
          headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
          agent: new PinnedAgent({ fingerprint: issuer.server.fingerprint }),
        },
        (response) => {
          let text = "";
          response.on("data", (chunk: Buffer) => (text += chunk.toString("utf8")));
          response.on("end", () =>
            resolve({ status: response.statusCode ?? 0, headers: response.headers, body: text }),
          );
        },
      );
      req.on("error", reject);
      if (body !== undefined) req.write(body);
      req.end();
    });

  const run = async (...extra: string[]): Promise<string> => {
    const result = await cli(
      "--json",
      "run",
      path.join(EXAMPLES, "refund-request.asl.json"),
      "--input",
      path.join(EXAMPLES, "refund-request.input.json"),
      "--handlers",
      path.join(EXAMPLES, "refund-request.handlers.js"),
      ...extra,
    );
    expect(result.code, result.stderr).to.equal(0);
    return (JSON.parse(result.stdout) as { instance_hash: string }).instance_hash;
  };

  let publicInstance: string;
  let privateInstance: string;

  it("run --public lists the instance as public (access.json created open); access private then guards the rest", async () => {
    publicInstance = await run("--public");
    expect(readPolicy(issuer.home)).to.deep.include({ mode: "open", public: [publicInstance], grants: [] });
    privateInstance = await run();
    expect((await request("GET", `/instances/${privateInstance}/protocol`)).status).to.equal(200); // still open
    expect((await cli("access", "private")).code).to.equal(0);
    expect((await request("GET", `/instances/${publicInstance}/protocol`)).status).to.equal(200);
    const refused = await request("GET", `/instances/${privateInstance}/protocol`);
    expect(refused.status).to.equal(401);
    expect(refused.headers["www-authenticate"]).to.equal(
      `SIWE realm="${new URL(issuer.identity.record.url).origin}", nonce_uri="/auth/nonce"`,
    );
    const list = JSON.parse((await request("GET", "/instances")).body) as { instance_hash: string }[];
    expect(list.map((row) => row.instance_hash)).to.deep.equal([publicInstance]);
  });

  it("the tracker names a new instance (onInstance) before anything of it is stored or registered", async () => {
    const calls: { instance: string; stored: boolean }[] = [];
    const model = await loadModel(path.join(EXAMPLES, "refund-request.asl.json"));
    const engine = createEngine({ engine: "local", handlers: path.join(EXAMPLES, "refund-request.handlers.js") });
    const head = await issuer
      .tracker(engine, {
        onInstance: (instance) => calls.push({ instance, stored: fs.existsSync(issuer.home.instanceDir(instance)) }),
      })
      .run(model, fs.readFileSync(path.join(EXAMPLES, "refund-request.input.json")));
    expect(calls).to.deep.equal([{ instance: head.instance_hash, stored: false }]);
  });

  it("grant to an ENS name records the address it resolves to on the chain; a name that doesn't is ENS_UNRESOLVED", async () => {
    const name = issuer.identity.record.ens_name!;
    const granted = await cli("--json", "grant", `instance:${privateInstance}`, name);
    expect(granted.code, granted.stderr).to.equal(0);
    expect(JSON.parse(granted.stdout)).to.include({ grantee: issuer.identity.record.address, name });
    const unresolved = await cli("grant", "all", "nobody-here.test");
    expect(unresolved.code).to.equal(65);
    expect(unresolved.stderr).to.match(/error ENS_UNRESOLVED: nobody-here\.test does not resolve/);
  });

  it("a grantee signs in for the identity's origin and chain and reads; the revoke is felt at the next request", async () => {
    const auditor = Wallet.createRandom();
    expect((await cli("grant", privateInstance, auditor.address)).code).to.equal(0);
    const origin = new URL(issuer.identity.record.url).origin;
    const { nonce } = JSON.parse((await request("GET", "/auth/nonce")).body) as { nonce: string };
    const now = new Date();
    const message = buildSignInMessage({
      domain: new URL(origin).host,
      address: auditor.address,
      uri: origin,
      chainId: issuer.deployment.chainId,
      nonce,
      issuedAt: now,
      expirationTime: new Date(now.getTime() + 600_000),
    });
    const signIn = await request(
      "POST",
      "/auth/siwe",
      {},
      JSON.stringify({ message, signature: await auditor.signMessage(message) }),
    );
    expect(signIn.status, signIn.body).to.equal(200);
    const { token } = JSON.parse(signIn.body) as { token: string };
    const read = await request("GET", `/instances/${privateInstance}/protocol`, { authorization: `Bearer ${token}` });
    expect(read.status).to.equal(200);
    expect(JSON.parse(read.body)).to.include({ instance_hash: privateInstance });
    expect((await cli("revoke-grant", auditor.address)).code).to.equal(0);
    const after = await request("GET", `/instances/${privateInstance}/protocol`, { authorization: `Bearer ${token}` });
    expect(after.status).to.equal(403);
  });

  it("grants with fields, read by the real verifier: valid-as-disclosed for outcome only, the input with input, valid with every field", async () => {
    const auditor = Wallet.createRandom();
    const verify = async (): Promise<VerificationReport> => {
      const result = await runCli(
        [
          "--rpc",
          node.url,
          "--json",
          "verify",
          `${issuer.identity.record.url}/instances/${privateInstance}/protocol`,
          "--auditor-key-env",
          "FIELD_AUDITOR_KEY",
          ...trustFlags(issuer),
        ],
        { FIELD_AUDITOR_KEY: auditor.privateKey },
      );
      const report = (JSON.parse(result.stdout) as { reports: VerificationReport[] }).reports[0];
      expect(result.code, result.stdout + result.stderr).to.equal(report.exit_code);
      return report;
    };
    const fail = (report: VerificationReport) => report.steps.filter((step) => step.status === "fail");

    expect((await cli("grant", `instance:${privateInstance}`, auditor.address, "--fields", "outcome")).code).to.equal(
      0,
    );
    const outcomeOnly = await verify();
    expect(fail(outcomeOnly)).to.deep.equal([]);
    expect(outcomeOnly.verdict).to.equal("valid-as-disclosed");
    expect(outcomeOnly.exit_code).to.equal(3);
    const summary = outcomeOnly.disclosure!;
    expect(summary.execution_input).to.equal("redacted");
    expect(summary.states).to.be.greaterThan(0);
    expect(summary.redacted_fields).to.include({ outcome: 0, input: summary.states, caught: summary.states });
    expect(summary.complete).to.equal(false);

    // Re-granted with input too: the execution input is disclosed, the states' context still not.
    expect(
      (await cli("grant", `instance:${privateInstance}`, auditor.address, "--fields", "input,outcome")).code,
    ).to.equal(0);
    const withInput = await verify();
    expect(withInput.verdict).to.equal("valid-as-disclosed");
    expect(withInput.disclosure!.execution_input).to.equal("disclosed");
    expect(withInput.disclosure!.redacted_fields).to.include({ input: 0, outcome: 0 });

    // Without --fields: every field again, and nothing withheld.
    expect((await cli("grant", `instance:${privateInstance}`, auditor.address)).code).to.equal(0);
    const whole = await verify();
    expect(whole.verdict).to.equal("valid");
    expect(whole.exit_code).to.equal(0);
  });
});
