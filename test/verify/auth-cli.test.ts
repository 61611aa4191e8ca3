import { expect } from "chai";
import { spawnSync } from "node:child_process";
import { encryptKeystoreJson, Wallet } from "ethers";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { auditorKeySource } from "../../src/cli/auditor";
import { type StatetrailError } from "../../src/errors";
import { type AuditorSource } from "../../src/verify/auth";

/** The auditor's key options of `verify` and `watch` (src/cli/auditor.ts). */
describe("CLI: the auditor's key (--auditor-key-env, --auditor-keystore, $STATETRAIL_AUDITOR_KEY)", function () {
  this.timeout(60_000);
  const auditor = Wallet.createRandom();
  let dir: string;

  before(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-auditor-"))));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const thrown = (run: () => unknown): StatetrailError => {
    try {
      run();
    } catch (error) {
      return error as StatetrailError;
    }
    throw new Error("expected an error");
  };
  const load = async (source: AuditorSource | null): Promise<string> => {
    expect(source).to.be.a("function");
    const signer = await (source as () => Promise<Wallet> | Wallet)();
    return signer.getAddress();
  };

  it("none configured: null; $STATETRAIL_AUDITOR_KEY by default; --auditor-key-env names another variable", async () => {
    expect(auditorKeySource({}, {})).to.equal(null);
    expect(auditorKeySource({}, { STATETRAIL_AUDITOR_KEY: "  " })).to.equal(null);
    expect(await load(auditorKeySource({}, { STATETRAIL_AUDITOR_KEY: auditor.privateKey }))).to.equal(auditor.address);
    const other = Wallet.createRandom();
    const env = { STATETRAIL_AUDITOR_KEY: auditor.privateKey, MINE: other.privateKey.slice(2) };
    expect(await load(auditorKeySource({ auditorKeyEnv: "MINE" }, env))).to.equal(other.address);
  });

  it("usage errors at once: both options, a variable that is not set, not a variable name, no such keystore", () => {
    const both = thrown(() => auditorKeySource({ auditorKeyEnv: "A", auditorKeystore: "k.json" }, {}));
    expect(both.code).to.equal("INVALID_ARGUMENT");
    const unset = thrown(() => auditorKeySource({ auditorKeyEnv: "NOT_SET" }, {}));
    expect(unset.code).to.equal("INVALID_ARGUMENT");
    expect(unset.message).to.contain("NOT_SET");
    expect(thrown(() => auditorKeySource({ auditorKeyEnv: "0x1234" }, {})).code).to.equal("INVALID_ARGUMENT");
    const missing = thrown(() => auditorKeySource({ auditorKeystore: path.join(dir, "nope.json") }, {}));
    expect(missing.code).to.equal("INVALID_ARGUMENT");
  });

  it("a malformed key is refused when loaded, without the key in the message", async () => {
    const source = auditorKeySource({}, { STATETRAIL_AUDITOR_KEY: "0xnot-a-key-123456" });
    const error = await Promise.resolve()
      .then(() => (source as () => Wallet)())
      .then(
        () => undefined,
        (caught: unknown) => caught as StatetrailError,
      );
    expect(error?.code).to.equal("INVALID_ARGUMENT");
    expect(error?.message).to.contain("STATETRAIL_AUDITOR_KEY");
    expect(error?.message).to.not.contain("not-a-key");
  });

  it("--auditor-keystore: decrypted with $STATETRAIL_PASSWORD when first used; a wrong password is KEYSTORE_PASSWORD", async () => {
    const file = path.join(dir, "auditor.json");
    const json = await encryptKeystoreJson(
      { address: auditor.address, privateKey: auditor.privateKey },
      "auditor-password",
      { scrypt: { N: 1 << 10, r: 8, p: 1 } },
    );
    fs.writeFileSync(file, json);
    const saved = process.env.STATETRAIL_PASSWORD;
    try {
      process.env.STATETRAIL_PASSWORD = "auditor-password";
      expect(await load(auditorKeySource({ auditorKeystore: file }, {}))).to.equal(auditor.address);
      process.env.STATETRAIL_PASSWORD = "wrong";
      const source = auditorKeySource({ auditorKeystore: file }, {}) as () => Promise<Wallet>;
      const error = await source().then(
        () => undefined,
        (caught: unknown) => caught as StatetrailError,
      );
      expect(error?.code).to.equal("KEYSTORE_PASSWORD");
      fs.writeFileSync(path.join(dir, "not-a-keystore.json"), "{}");
      process.env.STATETRAIL_PASSWORD = "auditor-password";
      const unreadable = auditorKeySource({ auditorKeystore: path.join(dir, "not-a-keystore.json") }, {});
      const refused = await (unreadable as () => Promise<Wallet>)().then(
        () => undefined,
        (caught: unknown) => caught as StatetrailError,
      );
      expect(refused?.code).to.equal("INVALID_ARGUMENT");
    } finally {
      if (saved === undefined) delete process.env.STATETRAIL_PASSWORD;
      else process.env.STATETRAIL_PASSWORD = saved;
    }
  });

  it("verify --help and watch --help list the options and load neither ethers nor viem", () => {
    const root = path.resolve(__dirname, "..", "..");
    for (const command of ["verify", "watch"]) {
      const script = `
        const { main } = require(${JSON.stringify(path.join(root, "src", "cli", "main"))});
        let text = "";
        process.stdout.write = (chunk) => { text += chunk; return true; };
        main(["node", "statetrail", ${JSON.stringify(command)}, "--help"]).then((code) => {
          const loaded = Object.keys(require.cache).filter((k) => /node_modules[\\\\/](ethers|viem)[\\\\/]/.test(k));
          process.stderr.write(JSON.stringify({ code, loaded, text }));
        });`;
      const run = spawnSync(process.execPath, ["-r", "ts-node/register/transpile-only", "-e", script], {
        cwd: root,
        encoding: "utf8",
        env: { ...process.env, STATETRAIL_AUDITOR_KEY: auditor.privateKey },
      });
      const result = JSON.parse(run.stderr.slice(run.stderr.indexOf("{"))) as {
        code: number;
        loaded: string[];
        text: string;
      };
      expect(result.code, command).to.equal(0);
      expect(result.loaded, command).to.deep.equal([]);
      for (const option of ["--auditor-key-env <NAME>", "--auditor-keystore <file>", "STATETRAIL_AUDITOR_KEY"]) {
        expect(result.text, command).to.contain(option);
      }
    }
  });
});
