import { expect } from "chai";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { sha256Hex } from "../../src/chain/hash";
import { isStatetrailError } from "../../src/errors";
import {
  accessFile,
  accessLogFile,
  grantAccess,
  mayRead,
  mirrorNotice,
  parseUntil,
  readPolicy,
  writePolicy,
  emptyPolicy,
} from "../../src/store/access";
import { Home } from "../../src/store/home";
import { accessNotice } from "../../src/cli/commands/serve";
import { runCli } from "../helpers/cli-run";

const ALICE = "0x70997970C51812dC3A010C7d01b50e0dd17Dc79c";
const BOB = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";
const INSTANCE = sha256Hex("an instance");
const MODEL = sha256Hex("a model");

describe("CLI: grant, revoke-grant, access (ACCESS.md)", function () {
  this.timeout(30_000);
  let root: string;
  let home: Home;

  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-grant-"));
    home = new Home(root);
  });
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  const cli = (...argv: string[]) => runCli(["--home", root, ...argv]);
  const json = async (...argv: string[]) => {
    const result = await cli("--json", ...argv);
    expect(result.code, result.stderr).to.equal(0);
    return JSON.parse(result.stdout) as Record<string, unknown>;
  };
  const logLines = (): Record<string, unknown>[] =>
    fs
      .readFileSync(accessLogFile(home), "utf8")
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as Record<string, unknown>);

  it("grant on a home without a policy creates it in mode private (0600) and logs the grant", async () => {
    const result = await cli("grant", `instance:${INSTANCE}`, ALICE.toLowerCase(), "--until", "30d");
    expect(result.code, result.stderr).to.equal(0);
    expect(result.stdout).to.match(/^granted g-[0-9a-f]{8}: 0x70997970C51812dC3A010C7d01b50e0dd17Dc79c may read/);
    expect(result.stdout).to.include("in mode private");
    const policy = readPolicy(home)!;
    expect(policy.mode).to.equal("private");
    expect(policy.grants).to.have.length(1);
    const [grant] = policy.grants;
    expect(grant.grantee).to.equal(ALICE); // checksummed
    expect(grant.scope).to.equal(`instance:${INSTANCE}`);
    expect(grant.name).to.equal(null);
    const days = (Date.parse(grant.until!) - Date.parse(grant.granted_at)) / 86_400_000;
    expect(Math.round(days)).to.equal(30);
    expect(fs.statSync(accessFile(home)).mode & 0o777).to.equal(0o600);
    expect(fs.statSync(accessLogFile(home)).mode & 0o777).to.equal(0o600);
    const [line] = logLines();
    expect(line).to.include({ action: "grant", id: grant.id, grantee: ALICE, scope: `instance:${INSTANCE}` });
    expect(Date.parse(String(line.at))).to.be.a("number").and.not.NaN;
    expect(mayRead(policy, ALICE, { kind: "instance", instance: INSTANCE }, { now: new Date() })).to.equal("granted");
    expect(mayRead(policy, BOB, { kind: "instance", instance: INSTANCE }, { now: new Date() })).to.equal(
      "grant-missing",
    );
    expect(mayRead(policy, null, { kind: "instance", instance: INSTANCE }, { now: new Date() })).to.equal(
      "auth-required",
    );
  });

  it("grant takes all, model:<h>, instance:<h> or a bare (0x-)hash; granting again renews", async () => {
    const a = await json("grant", "all", ALICE);
    expect(a).to.include({ scope: "all", created_policy: true, mode: "private" });
    const b = await json("grant", `model:0x${MODEL.toUpperCase()}`, BOB, "--until", "2099-01-01");
    expect(b).to.include({ scope: `model:${MODEL}`, until: "2099-01-01T00:00:00.000Z", created_policy: false });
    const c = await json("grant", INSTANCE, BOB);
    expect(c.scope).to.equal(`instance:${INSTANCE}`);
    const renewed = await cli("grant", INSTANCE, BOB, "--until", "12h");
    expect(renewed.stdout).to.match(new RegExp(`^renewed ${String(c.id)}:`));
    expect(readPolicy(home)!.grants).to.have.length(3);
    expect(logLines()).to.have.length(4);
  });

  it("refuses unknown --fields, bad scopes, bad addresses and times, and a malformed policy", async () => {
    for (const list of ["bogus", "outcome,bogus", "", "all,input", "Outcome"]) {
      const fields = await cli("grant", "all", ALICE, "--fields", list);
      expect(fields.code, list).to.equal(64);
      expect(fields.stderr, list)
        .to.match(/error INVALID_ARGUMENT: --fields/)
        .and.match(/the allowed fields are caught, context, input, outcome/);
    }
    expect(fs.existsSync(accessFile(home))).to.equal(false);
    for (const argv of [
      ["grant", "model:xyz", ALICE],
      ["grant", "everything", ALICE],
      ["grant", "all", "0x70997970c51812dc3a010c7d01b50e0dd17dC79C"], // wrong checksum
      ["grant", "all", "alice"],
      ["grant", "all", ALICE, "--until", "yesterday"],
      ["grant", "all", ALICE, "--until", "2001-01-01T00:00:00Z"],
      ["revoke-grant", "g-00000000"],
      ["access", "public", "not-a-hash"],
    ]) {
      const result = await cli(...argv);
      expect(result.code, argv.join(" ")).to.equal(64);
      expect(result.stderr, argv.join(" ")).to.match(/error INVALID_ARGUMENT/);
    }
    fs.writeFileSync(
      accessFile(home),
      '{"statetrail_access":1,"mode":"private","public":[],"grants":[],"mode":"open"}',
    );
    const malformed = await cli("grant", "all", ALICE);
    expect(malformed.code).to.equal(65);
    expect(malformed.stderr)
      .to.match(/error ACCESS_POLICY_INVALID/)
      .and.match(/what to do:/);
    expect((await cli("access", "status")).stderr).to.match(/ACCESS_POLICY_INVALID/);
  });

  it("grant --fields: stored in DATA_FIELDS order, logged, shown by access status; granting again replaces fields and until", async () => {
    const first = await cli(
      "grant",
      `instance:${INSTANCE}`,
      ALICE,
      "--fields",
      "outcome, input,outcome",
      "--until",
      "30d",
    );
    expect(first.code, first.stderr).to.equal(0);
    expect(first.stdout).to.match(/may read instance:[0-9a-f]{64}, fields input, outcome until /);
    let [grant] = readPolicy(home)!.grants;
    expect(grant.fields).to.deep.equal(["input", "outcome"]);
    expect(logLines()[0]).to.deep.include({ action: "grant", id: grant.id, fields: ["input", "outcome"] });
    const status = await cli("access", "status");
    expect(status.stdout).to.match(
      new RegExp(`${grant.id} ${ALICE} instance:${INSTANCE} fields input, outcome until `),
    );
    const listed = await json("access", "status");
    expect((listed.grants as { fields: unknown }[])[0].fields).to.deep.equal(["input", "outcome"]);

    // context discloses the execution input too: said at grant time, and in the help.
    const context = await json("grant", `model:${MODEL}`, ALICE, "--fields", "context");
    expect(context.fields).to.deep.equal(["context"]);
    expect((await cli("grant", `model:${MODEL}`, ALICE, "--fields", "context")).stdout).to.match(
      /context discloses the execution input too/,
    );
    const help = await cli("grant", "--help");
    expect(help.stdout).to.match(/WARNING: granting context discloses the execution input too/);
    expect(help.stdout).to.match(/input +a state's input, and the execution input/);

    // The same scope and address again: that grant's fields and until are replaced (none given: every field).
    const again = await json("grant", `instance:${INSTANCE}`, ALICE, "--fields", "caught");
    expect(again.id).to.equal(grant.id);
    [grant] = readPolicy(home)!.grants;
    expect(grant).to.deep.include({ fields: ["caught"], until: null });
    expect(logLines().at(-1)).to.deep.include({ action: "grant", replaced: grant.id, fields: ["caught"] });
    await json("grant", `instance:${INSTANCE}`, ALICE);
    [grant] = readPolicy(home)!.grants;
    expect(grant.fields).to.equal(null);
    expect((await cli("access", "status")).stdout).to.match(
      new RegExp(`${grant.id} ${ALICE} instance:${INSTANCE} every field`),
    );
    const none = await json("grant", "all", BOB, "--fields", "none");
    expect(none.fields).to.deep.equal([]);
    expect((await cli("access", "status")).stdout).to.match(/all no field \(structure and digests only\)/);
    expect(readPolicy(home)!.grants).to.have.length(3);
  });

  it("an ENS grantee: the resolved address counts, the name is recorded; a name that doesn't resolve is ENS_UNRESOLVED", async () => {
    const result = await grantAccess(home, {
      scope: "all",
      grantee: "Auditor.ETH",
      resolveName: async (name) => (name === "Auditor.ETH" ? ALICE.toLowerCase() : null),
    });
    expect(result.grant).to.include({ grantee: ALICE, name: "auditor.eth" });
    const error = await grantAccess(home, { scope: "all", grantee: "nobody.eth", resolveName: async () => null }).catch(
      (e: unknown) => e,
    );
    expect(isStatetrailError(error, "ENS_UNRESOLVED")).to.equal(true);
    expect(readPolicy(home)!.grants).to.have.length(1);
    // revoke-grant by the recorded name
    const revoked = await json("revoke-grant", "auditor.eth");
    expect((revoked.revoked as unknown[]).length).to.equal(1);
  });

  it("revoke-grant by id, or by address (optionally one scope); each revoke is logged", async () => {
    const first = await json("grant", "all", ALICE);
    await json("grant", `model:${MODEL}`, ALICE);
    await json("grant", INSTANCE, BOB);
    const byId = await cli("revoke-grant", String(first.id));
    expect(byId.code, byId.stderr).to.equal(0);
    expect(byId.stdout).to.match(new RegExp(`^revoked ${String(first.id)}: ${ALICE} all`));
    expect((await cli("revoke-grant", ALICE, "--scope", "all")).code).to.equal(64); // nothing left of that scope
    const byAddress = await json("revoke-grant", ALICE.toLowerCase());
    expect((byAddress.revoked as { scope: string }[]).map((g) => g.scope)).to.deep.equal([`model:${MODEL}`]);
    const policy = readPolicy(home)!;
    expect(policy.grants.map((g) => g.grantee)).to.deep.equal([BOB]);
    const actions = logLines().map((line) => line.action);
    expect(actions).to.deep.equal(["grant", "grant", "grant", "revoke", "revoke"]);
  });

  it("access private | open | status | public | unpublic", async () => {
    const none = await json("access", "status");
    expect(none).to.deep.equal({ mode: "open", file: null, public: [], grants: [] });
    const status = await cli("access", "status");
    expect(status.stdout).to.match(/^mode open \(no access.json: anyone may read everything\)/);

    // public on a home without a policy: created open, nothing changes for readers.
    const pub = await cli("access", "public", INSTANCE);
    expect(pub.code, pub.stderr).to.equal(0);
    expect(pub.stdout).to.include("access.json created in mode open");
    expect(readPolicy(home)).to.deep.include({ mode: "open", public: [INSTANCE] });
    expect((await cli("access", "public", `0x${INSTANCE}`)).stdout).to.include("already public");

    expect(await json("access", "private")).to.deep.equal({ mode: "private", before: "open" });
    expect((await cli("access", "private")).stdout).to.match(/^already in mode private/);
    await json("grant", "all", ALICE, "--until", "1h");
    const listed = await json("access", "status");
    expect(listed).to.include({ mode: "private", file: accessFile(home) });
    expect(listed.public).to.deep.equal([INSTANCE]);
    expect((listed.grants as { grantee: string; live: boolean }[])[0]).to.include({ grantee: ALICE, live: true });
    expect((await cli("access", "status")).stdout).to.match(
      /grants:\n {2}g-[0-9a-f]{8} 0x7099.* all every field until /,
    );

    expect((await json("access", "unpublic", INSTANCE)).changed).to.equal(true);
    expect(readPolicy(home)!.public).to.deep.equal([]);
    expect(await json("access", "open")).to.deep.equal({ mode: "open", before: "private" });
    expect(readPolicy(home)!.grants).to.have.length(1); // kept
    expect(logLines().map((line) => line.action)).to.deep.equal(["public", "mode", "grant", "unpublic", "mode"]);
  });

  it("access.json is refused when it is not exactly the policy's form", () => {
    const good = emptyPolicy("private");
    writePolicy(home, good);
    expect(readPolicy(home)).to.deep.equal(good);
    for (const text of [
      "",
      "[]",
      '{"statetrail_access":2,"mode":"private","public":[],"grants":[]}',
      '{"statetrail_access":1,"mode":"closed","public":[],"grants":[]}',
      '{"statetrail_access":1,"mode":"private","public":["ABC"],"grants":[]}',
      `{"statetrail_access":1,"mode":"private","public":[],"grants":[{"id":"g-00000000","scope":"all","grantee":"${ALICE}","name":null,"granted_at":"2026-01-01T00:00:00Z","until":null,"fields":["x"]}]}`,
      `{"statetrail_access":1,"mode":"private","public":[],"grants":[{"id":"g-00000000","scope":"some","grantee":"${ALICE}","name":null,"granted_at":"2026-01-01T00:00:00Z","until":null}]}`,
    ]) {
      fs.writeFileSync(accessFile(home), text);
      let error: unknown;
      try {
        readPolicy(home);
      } catch (e) {
        error = e;
      }
      expect(isStatetrailError(error, "ACCESS_POLICY_INVALID"), text).to.equal(true);
    }
  });

  it("--until durations and times", () => {
    const now = new Date("2026-12-04T12:00:00.000Z");
    expect(parseUntil("30d", now)).to.equal("2027-01-03T12:00:00.000Z");
    expect(parseUntil("12h", now)).to.equal("2026-12-05T00:00:00.000Z");
    expect(parseUntil("90m", now)).to.equal("2026-12-04T13:30:00.000Z");
    expect(parseUntil("2w", now)).to.equal("2026-12-18T12:00:00.000Z");
    expect(parseUntil("2027-01-31T12:00:00Z", now)).to.equal("2027-01-31T12:00:00.000Z");
    for (const bad of ["0d", "30", "d", "-1h", "2026-12-04T11:00:00Z", "soon"]) {
      expect(() => parseUntil(bad, now), bad).to.throw(/--until/);
    }
  });

  it("serve's notice: a warning while anyone may read, the policy's size when private, the error when broken", async () => {
    expect(accessNotice(home)).to.match(/^warning: access mode open \(no access.json\): anyone may read/);
    await json("access", "public", INSTANCE);
    expect(accessNotice(home)).to.match(/^warning: access mode open: anyone may read/);
    await json("grant", "all", ALICE);
    await json("access", "private");
    expect(accessNotice(home)).to.equal(
      "access mode private: 1 public instance(s), 1 grant(s) (statetrail access status)",
    );
    fs.writeFileSync(accessFile(home), "{");
    expect(accessNotice(home)).to.match(/^error: .* is not a valid access policy.*answers 503/);
  });

  it("publish's notice names private instances copied to a mirror", async () => {
    const other = sha256Hex("another instance");
    expect(mirrorNotice(home, [INSTANCE, other])).to.equal(undefined); // no policy: open
    await json("access", "public", INSTANCE);
    expect(mirrorNotice(home, [INSTANCE, other])).to.equal(undefined); // open
    await json("access", "private");
    expect(mirrorNotice(home, [INSTANCE])).to.equal(undefined); // public
    expect(mirrorNotice(home, [INSTANCE, other])).to.match(/^warning: 1 of the instances copied are private here/);
    fs.writeFileSync(accessFile(home), "[");
    expect(mirrorNotice(home, [INSTANCE])).to.match(/access.json can't be read/);
  });

  it("statetrail --help lists the commands", async () => {
    const help = await runCli(["--help"]);
    expect(help.stdout).to.match(/grant \[options\] <scope> <grantee>/);
    expect(help.stdout).to.include("revoke-grant");
    expect(help.stdout).to.match(/access\s+the access policy/);
    expect((await runCli(["grant", "--help"])).stdout).to.include("--until <time>");
  });
});
