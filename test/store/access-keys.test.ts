import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { Wallet } from "ethers";
import { isStatetrailError } from "../../src/errors";
import { emptyPolicy, type AccessPolicy, type Grant } from "../../src/store/access";
import {
  accessKeysFile,
  mirrorPlan,
  readAccessKeys,
  recordPublicKey,
  recoverSignerKey,
} from "../../src/store/access-keys";
import { Home } from "../../src/store/home";

const H = "a".repeat(64);
const OTHER = "b".repeat(64);
const MODEL = "c".repeat(64);

describe("grantees' public keys (access-keys.json) and whom a mirror copy is encrypted for", function () {
  let home: Home;
  let seq = 0;
  const grant = (grantee: string, scope: Grant["scope"], extra: Partial<Grant> = {}): Grant => ({
    id: `g-${(seq++).toString(16).padStart(8, "0")}`,
    scope,
    grantee,
    name: null,
    granted_at: "2026-01-01T00:00:00.000Z",
    until: null,
    ...extra,
  });

  beforeEach(() => {
    home = new Home(fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-keys-"))).ensure();
  });
  afterEach(() => fs.rmSync(home.root, { recursive: true, force: true }));

  it("records a key in any form under its own address, refuses one of another address, 0600", function () {
    const a = Wallet.createRandom();
    const b = Wallet.createRandom();
    expect(recordPublicKey(home, a.signingKey.compressedPublicKey, "grant", { address: a.address })).to.equal(
      a.address,
    );
    expect(readAccessKeys(home).keys[a.address]).to.include({ public_key: a.signingKey.publicKey, source: "grant" });
    try {
      recordPublicKey(home, b.signingKey.publicKey, "grant", { address: a.address });
      expect.fail("a key of another address");
    } catch (error) {
      expect(isStatetrailError(error, "INVALID_ARGUMENT")).to.equal(true);
      expect((error as Error).message).to.include(b.address);
    }
    try {
      recordPublicKey(home, "0x04" + "00".repeat(64), "grant");
      expect.fail("not a point");
    } catch (error) {
      expect(isStatetrailError(error, "INVALID_ARGUMENT")).to.equal(true);
    }
    expect(Object.keys(readAccessKeys(home).keys)).to.deep.equal([a.address]);
    expect((fs.statSync(accessKeysFile(home)).mode & 0o777).toString(8)).to.equal("600");
    fs.writeFileSync(accessKeysFile(home), '{"statetrail_access_keys":1,"keys":{},"extra":1}');
    try {
      readAccessKeys(home);
      expect.fail("an unknown member");
    } catch (error) {
      expect(isStatetrailError(error, "ACCESS_POLICY_INVALID")).to.equal(true);
    }
  });

  it("recovers the key that signed an EIP-191 message (what the server records at sign-in)", async function () {
    const a = Wallet.createRandom();
    const message = "example.test wants you to sign in";
    expect(recoverSignerKey(message, await a.signMessage(message))).to.equal(a.signingKey.publicKey);
  });

  it("recipients: live full grants covering the instance (all, instance, model) with a known key", function () {
    const [all, inst, model, other, expired, nokey, partial] = Array.from({ length: 7 }, () => Wallet.createRandom());
    for (const wallet of [all, inst, model, other, expired, partial]) {
      recordPublicKey(home, wallet.signingKey.publicKey, "sign-in");
    }
    const keys = readAccessKeys(home);
    const policy: AccessPolicy = {
      ...emptyPolicy("private"),
      grants: [
        grant(all.address.toLowerCase(), "all"),
        grant(inst.address, `instance:${H}`),
        grant(model.address, `model:${MODEL}`),
        grant(other.address, `instance:${OTHER}`),
        grant(expired.address, "all", { until: "2020-01-01T00:00:00.000Z" }),
        grant(nokey.address, `instance:${H}`),
        { ...grant(partial.address, "all"), fields: ["outcome"] } as Grant,
      ],
    };
    const plan = mirrorPlan(policy, keys, H, MODEL, new Date("2026-06-01T00:00:00Z"));
    expect(plan.seal).to.equal(true);
    if (!plan.seal) return;
    expect(plan.recipients.map((r) => r.address)).to.deep.equal([all.address, inst.address, model.address]);
    expect(plan.recipients[0].publicKey).to.equal(all.signingKey.publicKey);
    expect(plan.withoutKey).to.deep.equal([nokey.address]);
    expect(plan.partial).to.deep.equal([partial.address]);

    expect(mirrorPlan(null, keys, H, MODEL)).to.deep.equal({ seal: false, reason: "open" });
    expect(mirrorPlan({ ...policy, mode: "open" }, keys, H, MODEL)).to.deep.equal({ seal: false, reason: "open" });
    expect(mirrorPlan({ ...policy, public: [H] }, keys, H, MODEL)).to.deep.equal({ seal: false, reason: "public" });
  });
});
