import { expect } from "chai";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import { ethers } from "hardhat";
import {
  createKeystore,
  hasKeystore,
  keystoreAddress,
  keystoreFile,
  loadKeystore,
  openOrCreateKeystore,
  promptHidden,
  resolvePassword,
} from "../../src/identity/keystore";
import { StatetrailError } from "../../src/errors";
import { Home } from "../../src/store/home";

const FAST = { STATETRAIL_FAST_KEYSTORE: "1" } as NodeJS.ProcessEnv;

function tempHome(): Home {
  return new Home(fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-keystore-")));
}

/** A stream that is not a terminal. */
function pipe(): PassThrough {
  return new PassThrough();
}

/** A stream that claims to be a terminal and then types `lines`. */
function fakeTty(lines: string[]): PassThrough & { isTTY: boolean } {
  const input = Object.assign(new PassThrough(), { isTTY: true });
  const pending = [...lines];
  // Feed one line each time readline starts listening for one.
  const feed = () => {
    const line = pending.shift();
    if (line !== undefined) setTimeout(() => input.write(line + "\n"), 5);
  };
  input.on("resume", feed);
  return input;
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<StatetrailError> {
  try {
    await promise;
  } catch (error) {
    expect(error).to.be.instanceOf(StatetrailError);
    expect((error as StatetrailError).code).to.equal(code);
    return error as StatetrailError;
  }
  expect.fail(`expected a ${code} error`);
}

describe("identity/keystore", function () {
  describe("createKeystore / loadKeystore", function () {
    it("round-trips a new key through keystore.json with mode 0600", async function () {
      const home = tempHome();
      const created = await createKeystore(home, { password: "correct horse", env: FAST });
      expect(hasKeystore(home)).to.equal(true);
      expect(fs.statSync(keystoreFile(home)).mode & 0o777).to.equal(0o600);
      expect(keystoreAddress(home)).to.equal(created.address);
      const loaded = await loadKeystore(home, { password: "correct horse", env: FAST });
      expect(loaded.address).to.equal(created.address);
      expect(loaded.privateKey).to.equal(created.wallet.privateKey);
      expect(created.imported).to.equal(false);
    });

    it("imports an existing private key", async function () {
      const home = tempHome();
      const key = ethers.Wallet.createRandom().privateKey;
      const created = await createKeystore(home, { password: "pw", privateKey: key.slice(2), env: FAST });
      expect(created.imported).to.equal(true);
      const loaded = await loadKeystore(home, { password: "pw" });
      expect(loaded.privateKey).to.equal(key);
    });

    it("uses the fast scrypt setting only when STATETRAIL_FAST_KEYSTORE=1", async function () {
      const home = tempHome();
      await createKeystore(home, { password: "pw", env: FAST });
      const fast = JSON.parse(fs.readFileSync(keystoreFile(home), "utf8"));
      expect(fast.Crypto.kdfparams.n).to.equal(1024);
      const slowHome = tempHome();
      await createKeystore(slowHome, { password: "pw", env: {} });
      const slow = JSON.parse(fs.readFileSync(keystoreFile(slowHome), "utf8"));
      expect(slow.Crypto.kdfparams.n).to.equal(131072);
    });

    it("takes the password from STATETRAIL_PASSWORD", async function () {
      const home = tempHome();
      const env = { ...FAST, STATETRAIL_PASSWORD: "from-env" };
      const created = await createKeystore(home, { env, input: pipe() });
      const loaded = await loadKeystore(home, { password: "from-env" });
      expect(loaded.address).to.equal(created.address);
    });

    it("refuses a wrong password with KEYSTORE_PASSWORD", async function () {
      const home = tempHome();
      await createKeystore(home, { password: "right", env: FAST });
      const error = await expectCode(loadKeystore(home, { password: "wrong" }), "KEYSTORE_PASSWORD");
      expect(error.message).to.match(/wrong password/);
    });

    it("reports a damaged keystore as IDENTITY_MISSING, not as a wrong password", async function () {
      const home = tempHome();
      fs.mkdirSync(home.root, { recursive: true });
      fs.writeFileSync(keystoreFile(home), "{ not json");
      await expectCode(loadKeystore(home, { password: "pw" }), "IDENTITY_MISSING");
    });

    it("refuses to overwrite an existing keystore", async function () {
      const home = tempHome();
      await createKeystore(home, { password: "pw", env: FAST });
      await expectCode(createKeystore(home, { password: "pw", env: FAST }), "INVALID_ARGUMENT");
    });

    it("reports a missing keystore as IDENTITY_MISSING", async function () {
      await expectCode(loadKeystore(tempHome(), { password: "pw" }), "IDENTITY_MISSING");
    });

    it("refuses an invalid private key", async function () {
      await expectCode(
        createKeystore(tempHome(), { password: "pw", privateKey: "0x1234", env: FAST }),
        "INVALID_ARGUMENT",
      );
    });

    it("opens an existing keystore and refuses to import a different key into it", async function () {
      const home = tempHome();
      const first = await openOrCreateKeystore(home, { password: "pw", env: FAST });
      const again = await openOrCreateKeystore(home, { password: "pw", env: FAST });
      expect(again.address).to.equal(first.address);
      await expectCode(
        openOrCreateKeystore(home, { password: "pw", privateKey: ethers.Wallet.createRandom().privateKey, env: FAST }),
        "INVALID_ARGUMENT",
      );
    });
  });

  describe("resolvePassword", function () {
    it("fails with KEYSTORE_PASSWORD and a hint when there is no password and no TTY", async function () {
      const error = await expectCode(resolvePassword({ env: {}, input: pipe() }), "KEYSTORE_PASSWORD");
      expect(error.hint).to.match(/STATETRAIL_PASSWORD/);
    });

    it("fails creating a keystore with no password and no TTY, writing nothing", async function () {
      const home = tempHome();
      await expectCode(createKeystore(home, { env: FAST, input: pipe() }), "KEYSTORE_PASSWORD");
      expect(hasKeystore(home)).to.equal(false);
    });

    it("prompts on a TTY without echoing the password", async function () {
      const input = fakeTty(["s3cret"]);
      const output = new PassThrough();
      let written = "";
      output.on("data", (chunk) => (written += chunk.toString()));
      const password = await resolvePassword({ env: {}, input, output });
      expect(password).to.equal("s3cret");
      expect(written).to.contain("Password");
      expect(written).to.not.contain("s3cret");
    });

    it("asks twice on a TTY for a new keystore, and refuses different answers", async function () {
      const home = tempHome();
      const created = await createKeystore(home, {
        env: FAST,
        input: fakeTty(["pw1", "pw1"]),
        output: new PassThrough(),
      });
      expect((await loadKeystore(home, { password: "pw1" })).address).to.equal(created.address);
      await expectCode(
        createKeystore(tempHome(), { env: FAST, input: fakeTty(["pw1", "pw2"]), output: new PassThrough() }),
        "KEYSTORE_PASSWORD",
      );
    });

    it("refuses an empty password", async function () {
      await expectCode(resolvePassword({ password: "" }), "KEYSTORE_PASSWORD");
    });

    it("rejects when the prompt's input ends without an answer", async function () {
      const input = new PassThrough();
      const promise = promptHidden("Password: ", { input, output: new PassThrough() });
      input.end();
      await expectCode(promise, "KEYSTORE_PASSWORD");
    });
  });
});
