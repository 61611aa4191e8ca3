import { expect } from "chai";
import { encryptKeystoreJson, Wallet, type Signer } from "ethers";
import fs from "node:fs";
import path from "node:path";
import type { IncomingMessage } from "node:http";
import { type InstanceProtocol } from "../../src/protocol/schema";
import { startServer } from "../../src/server/https";
import { emptyPolicy, writePolicy, type AccessPolicy, type Grant } from "../../src/store/access";
import {
  ensReaderFromProvider,
  trustedFromDeployment,
  verifyProtocol,
  type VerificationReport,
} from "../../src/verify";
import { SignInSession } from "../../src/verify/auth";
import { watchInstance, type WatchEvent } from "../../src/verify/watch";
import * as library from "../../src";
import { runCli } from "../helpers/cli-run";
import { GatedEngine, passesModel, startGatedRun } from "../helpers/gated-run";
import { runRefundRequest, setupIssuer, trustFlags, type TestIssuer } from "../helpers/issuer";
import { useHardhatNode } from "../helpers/node-process";

/**
 * A private instance (docs/design/ACCESS.md) verified end to end: a real chain (hardhat node), the issuer's real server
 * in mode private, the auditor's key signing in. With a grant: valid; without one, or without a key: could not verify
 * (never invalid, never valid).
 */
describe("verify and watch: a private instance (ACCESS.md), end to end", function () {
  this.timeout(300_000);
  const chain = useHardhatNode();
  let issuer: TestIssuer;
  let protocol: InstanceProtocol;
  const auditor = Wallet.createRandom();
  const stranger = Wallet.createRandom();
  const seen: Array<{ path: string; authorization: string | undefined }> = [];

  const policy = (
    grants: Array<Pick<Grant, "grantee" | "scope">>,
    edit: (p: AccessPolicy) => void = () => undefined,
  ) => {
    const p = emptyPolicy("private");
    p.grants = grants.map((g, i) => ({
      id: `g-${i.toString(16).padStart(8, "0")}`,
      name: null,
      granted_at: "2026-01-01T00:00:00.000Z",
      until: null,
      ...g,
    }));
    edit(p);
    writePolicy(issuer.home, p);
  };
  const urlOf = (instance: string) => `${issuer.identity.record.url}/instances/${instance}/protocol`;
  const verify = (auditorKey: Signer | SignInSession | null): Promise<VerificationReport> =>
    verifyProtocol({
      input: { url: urlOf(protocol.instance_hash) },
      provider: issuer.provider,
      trusted: trustedFromDeployment(issuer.deployment),
      ens: ensReaderFromProvider(issuer.provider),
      auditor: auditorKey,
    });
  const cli = (args: string[], env: Record<string, string> = {}) =>
    runCli(["--rpc", chain.url, "--json", ...args, ...trustFlags(issuer)], env);
  const step = (report: VerificationReport, id: string) => report.steps.find((s) => s.id === id)!;

  before(async function () {
    issuer = await setupIssuer(chain.url, { label: "private" });
    protocol = await runRefundRequest(issuer);
    issuer.server.server.on("request", (req: IncomingMessage) =>
      seen.push({ path: req.url ?? "", authorization: req.headers.authorization }),
    );
  });
  after(async function () {
    await issuer?.close();
  });
  beforeEach(() => {
    seen.length = 0;
    delete process.env.STATETRAIL_AUDITOR_KEY;
  });

  it("with a grant for the auditor's address: valid, with one sign-in for every fetch of the verification", async function () {
    policy([{ grantee: auditor.address, scope: `instance:${protocol.instance_hash}` }]);
    const session = new SignInSession({ auditor, chainId: issuer.deployment.chainId });
    const report = await verify(session);
    expect(report.verdict, JSON.stringify(report.steps.filter((s) => s.status !== "pass"))).to.equal("valid");
    expect(report.exit_code).to.equal(0);
    expect(session.signIns).to.equal(1);
    expect(seen.filter((s) => s.path === "/auth/siwe")).to.have.length(1);
    // Every data request after the first challenge carried the token.
    const data = seen.filter((s) => !s.path.startsWith("/auth/"));
    expect(data[0].authorization).to.equal(undefined);
    expect(data.slice(1).every((s) => s.authorization === `Bearer ${session.sessionFor(urlOf("x"))!.token}`)).to.equal(
      true,
    );
    expect(data.length).to.be.greaterThan(protocol.instance_protocol.length + 2); // head, pages, model, input, states
  });

  it("an issuer-wide or model grant counts too; a signer given as is signs in once for the process", async function () {
    policy([{ grantee: auditor.address, scope: `model:${protocol.model_hash}` }]);
    expect((await verify(auditor)).verdict).to.equal("valid");
    policy([{ grantee: auditor.address, scope: "all" }]);
    expect((await verify(auditor)).verdict).to.equal("valid");
    expect(seen.filter((s) => s.path === "/auth/siwe")).to.have.length(1);
  });

  it("asked about an issuer: signs in only to a server presenting a certificate that issuer registered", async function () {
    policy([{ grantee: auditor.address, scope: "all" }]);
    const ask = (issuerAddress: string) =>
      verifyProtocol({
        input: { url: urlOf(protocol.instance_hash) },
        provider: issuer.provider,
        trusted: trustedFromDeployment(issuer.deployment),
        ens: ensReaderFromProvider(issuer.provider),
        expected: { issuer: issuerAddress },
        auditor: new SignInSession({ auditor, chainId: issuer.deployment.chainId }),
      });
    const elsewhere = await ask(stranger.address);
    expect(elsewhere.verdict).to.equal("could-not-verify");
    expect(step(elsewhere, "V1")).to.include({ status: "error", code: "CERT_NOT_REGISTERED" });
    expect(seen.filter((s) => s.path.startsWith("/auth/"))).to.deep.equal([]);
    const genuine = await ask(issuer.identity.record.address);
    expect(genuine.verdict).to.equal("valid");
    expect(seen.filter((s) => s.path === "/auth/siwe")).to.have.length(1);
  });

  it("the library (statetrail's verifyProtocol and watchInstance) takes `auditor`", async function () {
    policy([{ grantee: auditor.address, scope: "all" }]);
    const options = {
      url: urlOf(protocol.instance_hash),
      rpcUrl: chain.url,
      trusted: trustedFromDeployment(issuer.deployment),
      ensRegistry: issuer.deployment.ens.registry,
    };
    expect((await library.verifyProtocol({ ...options, auditor })).verdict).to.equal("valid");
    const anonymous = await library.verifyProtocol(options);
    expect(step(anonymous, "V1")).to.include({ code: "AUTH_REQUIRED" });
    const watched = await library.watchInstance({ ...options, optional: ["V2"], timeoutMs: 60_000, auditor });
    expect(watched.exitCode).to.equal(0);
  });

  it("without a grant: could not verify (GRANT_MISSING), never invalid", async function () {
    policy([{ grantee: auditor.address, scope: "all" }]);
    const report = await verify(stranger);
    expect(report.verdict).to.equal("could-not-verify");
    expect(report.exit_code).to.equal(2);
    expect(step(report, "V1")).to.include({ status: "error", code: "GRANT_MISSING" });
    expect(report.steps.some((s) => s.status === "fail")).to.equal(false);
  });

  it("without a key: could not verify (AUTH_REQUIRED, naming the options)", async function () {
    policy([{ grantee: auditor.address, scope: "all" }]);
    const report = await verify(null);
    expect(report.verdict).to.equal("could-not-verify");
    const v1 = report.steps.find((s) => s.id === "V1")!;
    expect(v1).to.include({ status: "error", code: "AUTH_REQUIRED" });
    expect(v1.detail).to.contain("STATETRAIL_AUDITOR_KEY");
    expect(report.steps.some((s) => s.status === "fail")).to.equal(false);
  });

  it("a public instance: read without signing in, even with no key", async function () {
    policy([], (p) => p.public.push(protocol.instance_hash));
    const session = new SignInSession({ auditor: null, chainId: issuer.deployment.chainId });
    expect((await verify(session)).verdict).to.equal("valid");
    expect(session.signIns).to.equal(0);
  });

  describe("the CLI", function () {
    it("verify <url>: $STATETRAIL_AUDITOR_KEY by default, --auditor-key-env <NAME>; exit 0 with a grant", async function () {
      policy([{ grantee: auditor.address, scope: `instance:${protocol.instance_hash}` }]);
      const byDefault = await cli(["verify", urlOf(protocol.instance_hash)], {
        STATETRAIL_AUDITOR_KEY: auditor.privateKey,
      });
      expect(byDefault.code, byDefault.stdout + byDefault.stderr).to.equal(0);
      const named = await cli(["verify", urlOf(protocol.instance_hash), "--auditor-key-env", "MY_AUDITOR_KEY"], {
        MY_AUDITOR_KEY: auditor.privateKey,
      });
      expect(named.code, named.stdout + named.stderr).to.equal(0);
      expect(named.stdout + named.stderr).to.not.contain(auditor.privateKey.slice(2));
    });

    it("verify <url> --auditor-keystore <file>: the password from $STATETRAIL_PASSWORD; exit 0 with a grant", async function () {
      policy([{ grantee: auditor.address, scope: `instance:${protocol.instance_hash}` }]);
      const file = path.join(issuer.home.path(), "auditor-keystore.json");
      const json = await encryptKeystoreJson(
        { address: auditor.address, privateKey: auditor.privateKey },
        "auditor-password",
        { scrypt: { N: 1 << 10, r: 8, p: 1 } },
      );
      fs.writeFileSync(file, json);
      const result = await cli(["verify", urlOf(protocol.instance_hash), "--auditor-keystore", file], {
        STATETRAIL_PASSWORD: "auditor-password",
      });
      expect(result.code, result.stdout + result.stderr).to.equal(0);
      const wrong = await cli(["verify", urlOf(protocol.instance_hash), "--auditor-keystore", file], {
        STATETRAIL_PASSWORD: "not-the-password",
      });
      expect(wrong.code).to.equal(2);
      const report = (JSON.parse(wrong.stdout) as { reports: VerificationReport[] }).reports[0];
      expect(step(report, "V1")).to.include({ status: "error", code: "KEYSTORE_PASSWORD" });
    });

    it("verify <url> without a key: exit 2, AUTH_REQUIRED; with a key without a grant: exit 2, GRANT_MISSING", async function () {
      policy([{ grantee: auditor.address, scope: "all" }]);
      const none = await cli(["verify", urlOf(protocol.instance_hash)]);
      expect(none.code).to.equal(2);
      const noneReport = (JSON.parse(none.stdout) as { reports: VerificationReport[] }).reports[0];
      expect(step(noneReport, "V1")).to.include({ status: "error", code: "AUTH_REQUIRED" });
      const ungranted = await cli(["verify", urlOf(protocol.instance_hash)], {
        STATETRAIL_AUDITOR_KEY: stranger.privateKey,
      });
      expect(ungranted.code).to.equal(2);
      const report = (JSON.parse(ungranted.stdout) as { reports: VerificationReport[] }).reports[0];
      expect(step(report, "V1")).to.include({ status: "error", code: "GRANT_MISSING" });
      expect(step(report, "V1").detail).to.contain(stranger.address);
    });

    it("verify <ENS name>: the listing is read signed in, so the granted instance is verified", async function () {
      policy([{ grantee: auditor.address, scope: `instance:${protocol.instance_hash}` }]);
      const anonymous = await cli(["verify", "private.test"]);
      expect(anonymous.code, anonymous.stdout).to.equal(2); // the anonymous listing is empty
      const signed = await cli(["verify", "private.test"], { STATETRAIL_AUDITOR_KEY: auditor.privateKey });
      expect(signed.code, signed.stdout + signed.stderr).to.equal(0);
      const reports = (JSON.parse(signed.stdout) as { reports: VerificationReport[] }).reports;
      expect(reports.map((r) => r.subject?.instance_hash)).to.deep.equal([protocol.instance_hash]);
    });

    it("usage errors come before anything is read: both key options, a named variable that is not set", async function () {
      const url = urlOf(protocol.instance_hash);
      const both = await cli(["verify", url, "--auditor-key-env", "X", "--auditor-keystore", "k.json"]);
      expect(both.code).to.equal(64);
      const unset = await cli(["verify", url, "--auditor-key-env", "NO_SUCH_AUDITOR_KEY_VARIABLE"]);
      expect(unset.code).to.equal(64);
      expect(unset.stderr).to.contain("NO_SUCH_AUDITOR_KEY_VARIABLE");
      const watched = await cli(["watch", url, "--auditor-key-env", "NO_SUCH_AUDITOR_KEY_VARIABLE"]);
      expect(watched.code).to.equal(64);
      expect(seen).to.deep.equal([]);
    });

    it("watch <url> of a finished private instance: exit 0 with a grant, 2 without a key", async function () {
      policy([{ grantee: auditor.address, scope: "all" }]);
      const url = urlOf(protocol.instance_hash);
      const granted = await cli(["watch", url, "--timeout", "60"], { STATETRAIL_AUDITOR_KEY: auditor.privateKey });
      expect(granted.code, granted.stdout + granted.stderr).to.equal(0);
      const none = await cli(["watch", url, "--timeout", "60"]);
      expect(none.code, none.stdout).to.equal(2);
      expect(none.stdout).to.contain("AUTH_REQUIRED");
    });
  });

  it("watch of a running private instance: the head, pages, event stream and verifications sign in once", async function () {
    policy([{ grantee: auditor.address, scope: "all" }]);
    const names = ["One", "Two"];
    const engine = new GatedEngine(names);
    const run = await startGatedRun(issuer, engine, passesModel(names), '{"private": true}');
    const events: WatchEvent[] = [];
    const session = new SignInSession({ auditor, chainId: issuer.deployment.chainId });
    const watching = watchInstance({
      url: run.url,
      provider: issuer.provider,
      trusted: trustedFromDeployment(issuer.deployment),
      ens: null,
      optional: ["V2"],
      graceMs: 3_000,
      pollMs: 200,
      timeoutMs: 60_000,
      auditor: session,
      onEvent: (event) => events.push(event),
    });
    for (let step = 0; step <= names.length; step++) {
      await new Promise((resolve) => setTimeout(resolve, 300));
      engine.release(step);
    }
    const [result, finished] = await Promise.all([watching, run.finished]);
    expect(finished.error).to.equal(null);
    expect(result.exitCode, JSON.stringify(events)).to.equal(0);
    expect(events.at(-1)).to.deep.include({ type: "terminated", verdict: "valid" });
    expect(session.signIns).to.equal(1);
    const streams = seen.filter((s) => s.path.endsWith("/events"));
    expect(streams.length).to.be.greaterThan(0);
    expect(streams.every((s) => s.authorization === `Bearer ${session.sessionFor(run.url)!.token}`)).to.equal(true);
  });

  it("watch: the session ends mid-run (the server ends the stream): signs in once more and subscribes again", async function () {
    policy([{ grantee: auditor.address, scope: "all" }]);
    // The issuer's server again, with a clock the test moves and streams re-checked every 100 ms.
    let serverOffset = 0;
    let clientOffset = 0;
    const port = issuer.server.port;
    await issuer.server.close();
    issuer.server = await startServer({
      home: issuer.home,
      port,
      wellKnown: { registries: issuer.registries },
      log: () => undefined,
      access: { now: () => new Date(Date.now() + serverOffset), recheckMs: 100 },
    });
    issuer.server.server.on("request", (req: IncomingMessage) =>
      seen.push({ path: req.url ?? "", authorization: req.headers.authorization }),
    );
    try {
      await expiringSession();
    } finally {
      serverOffset = 0; // the server's clock back, for the tests after this one
    }
    async function expiringSession(): Promise<void> {
      const names = ["One", "Two", "Three"];
      const engine = new GatedEngine(names);
      const run = await startGatedRun(issuer, engine, passesModel(names), '{"expiring": true}');
      const events: WatchEvent[] = [];
      const session = new SignInSession({
        auditor,
        chainId: issuer.deployment.chainId,
        now: () => Date.now() + clientOffset,
      });
      const watching = watchInstance({
        url: run.url,
        provider: issuer.provider,
        trusted: trustedFromDeployment(issuer.deployment),
        ens: null,
        optional: ["V2"],
        graceMs: 3_000,
        pollMs: 200,
        timeoutMs: 60_000,
        auditor: session,
        onEvent: (event) => events.push(event),
      });
      const streamTokens = () =>
        new Set(seen.filter((s) => s.path.endsWith("/events") && s.authorization).map((s) => s.authorization));
      engine.release(0);
      while (streamTokens().size === 0) await new Promise((resolve) => setTimeout(resolve, 100));
      // The session ends on the server (10 minutes), not yet for the client: its next requests carry the old token.
      serverOffset = 10 * 60_000 + 30_000;
      clientOffset = 9 * 60_000;
      while (streamTokens().size < 2) await new Promise((resolve) => setTimeout(resolve, 100));
      for (let step = 1; step <= names.length; step++) {
        await new Promise((resolve) => setTimeout(resolve, 300));
        engine.release(step);
      }
      const [result, finished] = await Promise.all([watching, run.finished]);
      expect(finished.error).to.equal(null);
      expect(result.exitCode, JSON.stringify(events)).to.equal(0);
      expect(session.signIns).to.equal(2);
      expect(events.filter((e) => e.type === "error")).to.deep.equal([]);
      expect([...streamTokens()].at(-1)).to.equal(`Bearer ${session.sessionFor(run.url)!.token}`);
    }
  });
});
