import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import { expect } from "chai";
import { Wallet, type HDNodeWallet } from "ethers";
import S3rver from "s3rver";
import { freePort } from "../../src/chain/node";
import { createEngine } from "../../src/engine";
import { isStatetrailError } from "../../src/errors";
import { loadModel } from "../../src/model/load";
import { createS3Client, getObjectBytes, putObjectBytes, type S3Settings } from "../../src/net/s3";
import {
  isSealed,
  mirrorKeysOf,
  newDataKey,
  openObject,
  parseMirrorKeys,
  sealObject,
  uncompressedPublicKey,
  unwrapKey,
} from "../../src/protocol/envelope";
import { contentOf, readStateDocument, sealState } from "../../src/protocol/disclosure";
import { type InstanceProtocol } from "../../src/protocol/schema";
import { publishToMirror } from "../../src/publish/mirror";
import { emptyPolicy, setMode, setPublic, writePolicy, type AccessPolicy, type Grant } from "../../src/store/access";
import { accessKeysFile, mirrorPlan, readAccessKeys, recordPublicKey } from "../../src/store/access-keys";
import {
  ensReaderFromProvider,
  trustedFromDeployment,
  verifyProtocol,
  type VerificationReport,
} from "../../src/verify";
import * as library from "../../src";
import { runCli } from "../helpers/cli-run";
import { setupIssuer, type TestIssuer } from "../helpers/issuer";
import { useHardhatNode } from "../helpers/node-process";

const ROOT = path.resolve(__dirname, "..", "..");
const EXAMPLES = path.join(ROOT, "examples");
const CREDENTIALS = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };
const PAGE_SIZE = 4;

function statuses(report: VerificationReport): Record<string, string> {
  return Object.fromEntries(report.steps.map((step) => [step.id, step.status]));
}

function v1(report: VerificationReport) {
  return report.steps.find((step) => step.id === "V1")!;
}

/** Every string of a JSON value (keys and leaves). */
function strings(value: unknown, out: string[] = []): string[] {
  if (typeof value === "string") out.push(value);
  else if (Array.isArray(value)) value.forEach((item) => strings(item, out));
  else if (value && typeof value === "object") {
    for (const [key, item] of Object.entries(value)) {
      out.push(key);
      strings(item, out);
    }
  }
  return out;
}

describe("encrypted mirrors: publish sealed copies of private instances, verify them with a recipient's key", function () {
  this.timeout(90_000);
  const node = useHardhatNode();
  let issuer: TestIssuer;
  let protocol: InstanceProtocol;
  let storage: S3rver;
  let endpoint: string;
  let s3: S3Settings;
  let storageDir: string;
  let client: S3Client;
  let h: string;
  const marker = `MARKER-${randomBytes(8).toString("hex")}`;
  const auditor = Wallet.createRandom();
  const stranger = Wallet.createRandom();
  const keyless = Wallet.createRandom();
  let grantSeq = 0;

  const grant = (grantee: string, scope: Grant["scope"]): Grant => ({
    id: `g-${(grantSeq++).toString(16).padStart(8, "0")}`,
    scope,
    grantee,
    name: null,
    granted_at: "2026-01-01T00:00:00.000Z",
    until: null,
  });
  const policy = (edit: (p: AccessPolicy) => void): void => {
    const p = emptyPolicy("private");
    edit(p);
    writePolicy(issuer.home, p);
  };

  before(async function () {
    this.timeout(120_000);
    storageDir = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-s3-sealed-"));
    const port = await freePort();
    storage = new S3rver({
      address: "127.0.0.1",
      port,
      silent: true,
      directory: storageDir,
      configureBuckets: [{ name: "audit", configs: [] }],
    });
    await storage.run();
    endpoint = `http://127.0.0.1:${port}`;
    s3 = { endpoint, credentials: CREDENTIALS };
    client = createS3Client(s3);

    issuer = await setupIssuer(node.url, { label: "sealed" });
    const engine = createEngine({
      engine: "local",
      handlers: path.join(EXAMPLES, "order-fulfilment.handlers.js"),
      skipWaits: true,
    });
    const model = await loadModel(path.join(EXAMPLES, "order-fulfilment.asl.json"));
    const input = JSON.parse(fs.readFileSync(path.join(EXAMPLES, "order-fulfilment.input.json"), "utf8")) as Record<
      string,
      unknown
    >;
    input.reference = marker;
    const head = await issuer.tracker(engine, { pageSize: PAGE_SIZE }).run(model, Buffer.from(JSON.stringify(input)));
    h = head.instance_hash;
    protocol = issuer.home.readProtocol(h);
    policy((p) => {
      p.grants.push(grant(auditor.address, `instance:${h}`), grant(keyless.address, `model:${protocol.model_hash}`));
    });
    recordPublicKey(issuer.home, auditor.signingKey.compressedPublicKey, "grant", { address: auditor.address });
  });

  after(async function () {
    await issuer?.close();
    await storage?.close();
    fs.rmSync(storageDir, { recursive: true, force: true });
  });

  const verifyMirror = (url: string, key?: Wallet | HDNodeWallet): Promise<VerificationReport> =>
    verifyProtocol({
      input: { url },
      provider: issuer.provider,
      trusted: trustedFromDeployment(issuer.deployment),
      ens: ensReaderFromProvider(issuer.provider),
      mirror: { s3 },
      ...(key ? { auditor: key } : {}),
    });

  const keysUnder = async (prefix: string): Promise<string[]> => {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await client.send(
        new ListObjectsV2Command({ Bucket: "audit", Prefix: `${prefix}/`, ContinuationToken: token }),
      );
      keys.push(...(page.Contents ?? []).map((object) => object.Key!));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return keys.sort();
  };
  const read = (key: string) =>
    getObjectBytes(client, { bucket: "audit", key }, { maxBytes: 1 << 24, timeoutMs: 5000 });
  const put = (key: string, bytes: Buffer) =>
    putObjectBytes(client, { bucket: "audit", key }, bytes, {
      contentType: "application/octet-stream",
      cacheControl: "no-cache",
    });

  it("publishes every object of a private instance sealed: none holds the input, a state's field, the model", async function () {
    const logs: string[] = [];
    const result = await publishToMirror({
      home: issuer.home,
      mirror: "s3://audit/sealed",
      s3,
      log: (m) => logs.push(m),
    });
    expect(result.instances).to.have.length(1);
    expect(result.instances[0].encrypted_for).to.deep.equal([auditor.address]);
    expect(result.instances[0].protocol_url).to.equal(`s3://audit/sealed/instances/${h}/protocol`);
    // The grantee without a known key is named, with what to do.
    expect(logs.join("\n")).to.include(keyless.address).and.include("--public-key");

    const states = [...new Set(protocol.instance_protocol.map((entry) => entry.state_hash))];
    const pages = Math.ceil(protocol.instance_protocol.length / PAGE_SIZE);
    const expected = [
      `sealed/instances/${h}/keys.json`,
      `sealed/instances/${h}/protocol`,
      `sealed/instances/${h}/input`,
      `sealed/instances/${h}/models/${protocol.model_hash}`,
      ...states.map((state) => `sealed/instances/${h}/states/${state}`),
      ...Array.from({ length: pages }, (_, index) => `sealed/instances/${h}/protocol/pages/${index}`),
    ].sort();
    expect(await keysUnder("sealed")).to.deep.equal(expected);

    // What must not be readable: the input (with its marker), the model, every state, and every string in them.
    const secrets = new Set<string>([marker]);
    const plainFiles = [
      issuer.home.readInput(h),
      issuer.home.readModel(protocol.model_hash),
      fs.readFileSync(issuer.home.protocolFile(h)),
      ...states.map((state) => issuer.home.readState(state)),
    ];
    // State documents are JSON lines (the data, then each field's disclosure); the others one JSON document each.
    const values = (bytes: Buffer): unknown[] => {
      const text = bytes.toString("utf8");
      if (!text.includes("}\n{")) return [JSON.parse(text) as unknown];
      return text
        .split("\n")
        .filter((line) => line !== "")
        .map((line) => JSON.parse(line) as unknown);
    };
    for (const bytes of plainFiles) {
      for (const text of values(bytes).flatMap((value) => strings(value))) {
        // Hashes and addresses are on-chain anyway (object names, keys.json); short strings match by chance.
        if (text.length >= 8 && !/^(0x)?[0-9a-fA-F]{40,64}$/.test(text)) secrets.add(text);
      }
    }
    expect(
      values(issuer.home.readState(states[1]))
        .flatMap((value) => strings(value))
        .some((s) => s === marker),
    ).to.equal(true, "the marker is a state's field value too");
    let sealedCount = 0;
    for (const key of expected) {
      const bytes = await read(key);
      if (key.endsWith("/keys.json")) {
        // In clear, and exactly this: the instance hash, the ciphers, each recipient's address and wrapped key.
        const keys = parseMirrorKeys(bytes, h, key); // strict: no other member
        expect(keys.recipients.map((recipient) => recipient.address)).to.deep.equal([auditor.address]);
        expect(bytes.includes(Buffer.from(marker))).to.equal(false);
        continue;
      } else {
        expect(isSealed(bytes), key).to.equal(true);
        sealedCount += 1;
      }
      for (const plain of plainFiles) expect(bytes.includes(plain), `${key} holds a whole file`).to.equal(false);
      for (const secret of secrets)
        expect(bytes.includes(Buffer.from(secret)), `${key} holds "${secret}"`).to.equal(false);
    }
    expect(sealedCount).to.equal(expected.length - 1);
    expect(secrets.size).to.be.greaterThan(20);
  });

  it("verifies the sealed copy with the recipient's key (s3:// and http://), as a clear copy", async function () {
    for (const url of [
      `s3://audit/sealed/instances/${h}/protocol`,
      `${endpoint}/audit/sealed/instances/${h}/protocol`,
    ]) {
      const report = await verifyMirror(url, auditor);
      expect(report.verdict, `${url}: ${JSON.stringify(report.steps, null, 1)}`).to.equal("valid");
      expect(statuses(report)).to.include({ V1: "skip", V4: "pass", V6: "pass", V7: "pass", V8: "pass", V9: "pass" });
    }
  });

  it("the library: verifyProtocol({ url: s3://…, mirror: { s3 }, auditor: Wallet }) opens the copy", async function () {
    const options = {
      url: `s3://audit/sealed/instances/${h}/protocol`,
      rpcUrl: node.url,
      trusted: trustedFromDeployment(issuer.deployment),
      ensRegistry: issuer.deployment.ens.registry,
      mirror: { s3 },
    };
    expect((await library.verifyProtocol({ ...options, auditor: auditor })).verdict).to.equal("valid");
    const without = await library.verifyProtocol(options);
    expect(without.verdict).to.equal("could-not-verify");
    expect(v1(without).code).to.equal("MIRROR_KEY_REQUIRED");
  });

  it("without a key: MIRROR_KEY_REQUIRED naming the options; a key that is not a recipient: MIRROR_NOT_RECIPIENT", async function () {
    const url = `s3://audit/sealed/instances/${h}/protocol`;
    let report = await verifyMirror(url);
    expect(report.verdict).to.equal("could-not-verify");
    expect(v1(report).code).to.equal("MIRROR_KEY_REQUIRED");
    expect(v1(report).detail)
      .to.include("--auditor-key-env")
      .and.include("--auditor-keystore")
      .and.include(auditor.address, "names the address whose key opens it");
    report = await verifyMirror(url, stranger);
    expect(report.verdict).to.equal("could-not-verify");
    expect(v1(report).code).to.equal("MIRROR_NOT_RECIPIENT");
    expect(v1(report).detail).to.include(auditor.address).and.include(stranger.address);
  });

  it("a tampered copy is never valid: a flipped byte, objects swapped between paths, pages swapped", async function () {
    await publishToMirror({ home: issuer.home, mirror: "s3://audit/tamper", s3 });
    const base = `tamper/instances/${h}`;
    const url = `s3://audit/${base}/protocol`;
    const states = [...new Set(protocol.instance_protocol.map((entry) => entry.state_hash))];
    const stateA = await read(`${base}/states/${states[2]}`);
    const stateB = await read(`${base}/states/${states[3]}`);

    const flipped = Buffer.from(stateA);
    flipped[flipped.length - 20] ^= 0x01;
    await put(`${base}/states/${states[2]}`, flipped);
    let report = await verifyMirror(url, auditor);
    expect(report.verdict).to.not.equal("valid");
    // Could not verify: the state can't be read (V6 names the object that does not decrypt); never valid.
    expect(report.verdict).to.equal("could-not-verify");
    expect(report.steps.find((step) => step.id === "V6")!.detail).to.include("does not decrypt");

    await put(`${base}/states/${states[2]}`, stateB); // B's ciphertext at A's path
    await put(`${base}/states/${states[3]}`, stateA);
    report = await verifyMirror(url, auditor);
    expect(report.verdict).to.not.equal("valid");
    await put(`${base}/states/${states[2]}`, stateA);
    await put(`${base}/states/${states[3]}`, stateB);

    const page0 = await read(`${base}/protocol/pages/0`);
    const page1 = await read(`${base}/protocol/pages/1`);
    await put(`${base}/protocol/pages/0`, page1);
    await put(`${base}/protocol/pages/1`, page0);
    report = await verifyMirror(url, auditor);
    expect(report.verdict).to.not.equal("valid");
    await put(`${base}/protocol/pages/0`, page0);
    await put(`${base}/protocol/pages/1`, page1);

    // The head of another instance's sealed copy (or the input at the head's path) does not open either.
    await put(`${base}/protocol`, await read(`${base}/input`));
    report = await verifyMirror(url, auditor);
    expect(report.verdict).to.not.equal("valid");
    expect(v1(report).code).to.equal("MIRROR_DECRYPT_FAILED");

    // Repaired: valid again (nothing above was an artefact of the test).
    await publishToMirror({ home: issuer.home, mirror: "s3://audit/tamper", s3 });
    report = await verifyMirror(url, auditor);
    expect(report.verdict, JSON.stringify(report.steps, null, 1)).to.equal("valid");
  });

  it("a keys.json replaced by the mirror's own: for the attacker only, or for the auditor with forged content, never valid", async function () {
    await publishToMirror({ home: issuer.home, mirror: "s3://audit/forged", s3 });
    const base = `forged/instances/${h}`;
    const url = `s3://audit/${base}/protocol`;
    const attacker = Wallet.createRandom();
    const attackerKey = newDataKey();
    const relativeOf = (key: string) => key.slice("forged/".length);
    const originals = new Map<string, Buffer>();
    for (const key of await keysUnder("forged")) originals.set(key, await read(key));

    // 1. Wrapped for the attacker, every object re-sealed under the attacker's key (the plaintext is the genuine one).
    const reseal = async (dataKey: Buffer, edit: (relative: string, plain: Buffer) => Buffer = (_r, p) => p) => {
      for (const [key, bytes] of originals) {
        if (key.endsWith("/keys.json")) continue;
        const plain = genuinePlain(relativeOf(key), bytes);
        await put(key, sealObject(dataKey, h, relativeOf(key), edit(relativeOf(key), plain)));
      }
    };
    const genuineKeys = parseMirrorKeys(originals.get(`${base}/keys.json`)!, h, "keys.json");
    const genuineKey = unwrapKey(
      auditor.privateKey,
      h,
      Buffer.from(genuineKeys.recipients[0].wrapped_key.slice(2), "hex"),
    );
    const genuinePlain = (relative: string, bytes: Buffer) => openObject(genuineKey, h, relative, bytes);

    await put(
      `${base}/keys.json`,
      Buffer.from(
        JSON.stringify(
          mirrorKeysOf(h, attackerKey, [
            { address: attacker.address, publicKey: uncompressedPublicKey(attacker.signingKey.publicKey) },
          ]),
        ),
      ),
    );
    await reseal(attackerKey);
    let report = await verifyMirror(url, auditor);
    expect(report.verdict).to.equal("could-not-verify");
    expect(v1(report).code).to.equal("MIRROR_NOT_RECIPIENT");
    expect(v1(report).detail).to.include(attacker.address);

    // 2. A recipient entry that names the auditor but wraps the attacker's key for the attacker's public key.
    const wrongEntry = mirrorKeysOf(h, attackerKey, [
      { address: auditor.address, publicKey: uncompressedPublicKey(attacker.signingKey.publicKey) },
    ]);
    await put(`${base}/keys.json`, Buffer.from(JSON.stringify(wrongEntry)));
    report = await verifyMirror(url, auditor);
    expect(report.verdict).to.equal("could-not-verify");
    expect(v1(report).code).to.equal("MIRROR_DECRYPT_FAILED");

    // 3. Wrapped for the auditor's (public) key by the attacker, with a state's content forged: the chain refuses it.
    const forgedState = protocol.instance_protocol[3].state_hash;
    await put(
      `${base}/keys.json`,
      Buffer.from(
        JSON.stringify(
          mirrorKeysOf(h, attackerKey, [
            { address: auditor.address, publicKey: uncompressedPublicKey(auditor.signingKey.publicKey) },
          ]),
        ),
      ),
    );
    await reseal(attackerKey, (relative, plain) => {
      if (relative !== `instances/${h}/states/${forgedState}`) return plain;
      const content = contentOf(readStateDocument(plain));
      return sealState({ ...content, input: { amount: 1_000_000 } }).document;
    });
    report = await verifyMirror(url, auditor);
    expect(report.verdict).to.equal("invalid");
    expect(statuses(report)).to.include({ V6: "fail" });

    // 4. The same without the forgery: the genuine content re-encrypted by someone else is still the genuine content.
    await reseal(attackerKey);
    report = await verifyMirror(url, auditor);
    expect(report.verdict, "encryption is not what proves the content: the chain is").to.equal("valid");
  });

  it("a public instance, and mode open, are copied in clear and verify without a key", async function () {
    setPublic(issuer.home, h, true);
    try {
      const result = await publishToMirror({ home: issuer.home, mirror: "s3://audit/public", s3 });
      expect(result.instances[0]).to.include({ encrypted_for: null, clear_because: "public" });
      // The input document (every disclosure: a mirror has no access control), never the raw input file.
      expect(await read(`public/instances/${h}/input`)).to.deep.equal(
        fs.readFileSync(issuer.home.inputDocumentFile(h)),
      );
      expect(await read(`public/models/${protocol.model_hash}`)).to.deep.equal(
        issuer.home.readModel(protocol.model_hash),
      );
      expect((await keysUnder("public")).some((key) => key.endsWith("keys.json"))).to.equal(false);
      const report = await verifyMirror(`s3://audit/public/instances/${h}/protocol`);
      expect(report.verdict).to.equal("valid");
    } finally {
      setPublic(issuer.home, h, false);
    }
    setMode(issuer.home, "open");
    try {
      const result = await publishToMirror({ home: issuer.home, mirror: "s3://audit/open", s3 });
      expect(result.instances[0]).to.include({ encrypted_for: null, clear_because: "open" });
      expect(await read(`open/instances/${h}/input`)).to.deep.equal(fs.readFileSync(issuer.home.inputDocumentFile(h)));
    } finally {
      setMode(issuer.home, "private");
    }
  });

  it("no grantee with a known key: NO_RECIPIENTS and nothing uploaded; a grant of some fields is no recipient", async function () {
    const saved = fs.readFileSync(accessKeysFile(issuer.home));
    fs.rmSync(accessKeysFile(issuer.home));
    try {
      const refused = await publishToMirror({ home: issuer.home, mirror: "s3://audit/none", s3 }).catch(
        (error: unknown) => error,
      );
      expect(isStatetrailError(refused, "NO_RECIPIENTS"), String(refused)).to.equal(true);
      expect(await keysUnder("none")).to.deep.equal([]);
    } finally {
      fs.writeFileSync(accessKeysFile(issuer.home), saved, { mode: 0o600 });
    }
    // A later layer adds `fields` to grants: a grant of some fields never gets the key of a copy holding every field.
    const keys = readAccessKeys(issuer.home);
    const partial = { ...emptyPolicy("private"), grants: [{ ...grant(auditor.address, "all"), fields: ["amount"] }] };
    const plan = mirrorPlan(partial as AccessPolicy, keys, h, protocol.model_hash);
    expect(plan).to.deep.include({ seal: true, recipients: [], partial: [auditor.address] });
    expect((fs.statSync(accessKeysFile(issuer.home)).mode & 0o777).toString(8)).to.equal("600");
  });

  it("publishing again keeps the data key; a recipient removed makes a new one", async function () {
    const keyOf = async (prefix: string) => {
      const keys = parseMirrorKeys(await read(`${prefix}/instances/${h}/keys.json`), h, "keys.json");
      const mine = keys.recipients.find((recipient) => recipient.address === auditor.address)!;
      return unwrapKey(auditor.privateKey, h, Buffer.from(mine.wrapped_key.slice(2), "hex"));
    };
    await publishToMirror({ home: issuer.home, mirror: "s3://audit/again", s3 });
    const first = await keyOf("again");
    await publishToMirror({ home: issuer.home, mirror: "s3://audit/again", s3 });
    expect((await keyOf("again")).equals(first)).to.equal(true);
    // A second recipient, then removed: the key changes so the removed one can't read what comes next.
    const second = Wallet.createRandom();
    policy((p) => {
      p.grants.push(grant(auditor.address, `instance:${h}`), grant(second.address, "all"));
    });
    recordPublicKey(issuer.home, second.signingKey.publicKey, "sign-in");
    await publishToMirror({ home: issuer.home, mirror: "s3://audit/again", s3 });
    expect((await keyOf("again")).equals(first)).to.equal(true);
    policy((p) => {
      p.grants.push(grant(auditor.address, `instance:${h}`));
    });
    await publishToMirror({ home: issuer.home, mirror: "s3://audit/again", s3 });
    expect((await keyOf("again")).equals(first)).to.equal(false);
    expect((await verifyMirror(`s3://audit/again/instances/${h}/protocol`, auditor)).verdict).to.equal("valid");
  });

  it("a grantee who signs in to the issuer's server once is a recipient of the next copy", async function () {
    const late = Wallet.createRandom();
    policy((p) => {
      p.grants.push(grant(auditor.address, `instance:${h}`), grant(late.address, `instance:${h}`));
    });
    let result = await publishToMirror({ home: issuer.home, mirror: "s3://audit/late", s3 });
    expect(result.instances[0].encrypted_for).to.deep.equal([auditor.address]);
    // The grantee verifies at the source (signing in); the server records the key that signed in.
    const atSource = await verifyProtocol({
      input: { url: `${protocol.issuer.url.replace(/\/+$/, "")}/instances/${h}/protocol` },
      provider: issuer.provider,
      trusted: trustedFromDeployment(issuer.deployment),
      ens: ensReaderFromProvider(issuer.provider),
      auditor: late,
    });
    expect(atSource.verdict, JSON.stringify(atSource.steps, null, 1)).to.equal("valid");
    expect(readAccessKeys(issuer.home).keys[late.address]).to.include({
      public_key: late.signingKey.publicKey,
      source: "sign-in",
    });
    result = await publishToMirror({ home: issuer.home, mirror: "s3://audit/late", s3 });
    expect(result.instances[0].encrypted_for).to.have.members([auditor.address, late.address]);
    expect((await verifyMirror(`s3://audit/late/instances/${h}/protocol`, late)).verdict).to.equal("valid");
  });

  it("statetrail grant --public-key, publish and verify --auditor-key-env on the command line", async function () {
    policy((p) => {
      p.grants.push(grant(auditor.address, `instance:${h}`));
    });
    const env = {
      AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
      AWS_REGION: "us-east-1",
    };
    const wrong = await runCli(
      [
        "--home",
        issuer.home.root,
        "grant",
        `instance:${h}`,
        auditor.address,
        "--public-key",
        stranger.signingKey.publicKey,
      ],
      env,
    );
    expect(wrong.code, wrong.stderr).to.equal(64);
    expect(wrong.stderr).to.include(stranger.address);
    const granted = await runCli(
      [
        "--home",
        issuer.home.root,
        "grant",
        `instance:${h}`,
        auditor.address,
        "--public-key",
        auditor.signingKey.publicKey,
      ],
      env,
    );
    expect(granted.code, granted.stderr).to.equal(0);

    const published = await runCli(
      ["--json", "--home", issuer.home.root, "publish", "--mirror", "s3://audit/cli", "--endpoint", endpoint],
      env,
    );
    expect(published.code, published.stderr).to.equal(0);
    const result = JSON.parse(published.stdout) as { instances: { protocol_url: string; encrypted_for: string[] }[] };
    expect(result.instances[0].encrypted_for).to.deep.equal([auditor.address]);

    const { registries, deployment } = issuer;
    const verify = (extra: string[], more: Record<string, string> = {}) =>
      runCli(
        [
          "--json",
          "--quiet",
          "--rpc",
          node.url,
          "verify",
          result.instances[0].protocol_url,
          "--registries",
          `${registries.model},${registries.certificate},${registries.instance}`,
          "--chain-id",
          String(deployment.chainId),
          "--ens-registry",
          deployment.ens.registry,
          "--s3-endpoint",
          endpoint,
          ...extra,
        ],
        { ...env, ...more },
      );
    const bundle = path.join(storageDir, "sealed.bundle.json");
    const html = path.join(storageDir, "sealed.html");
    const withKey = await verify(["--auditor-key-env", "MY_AUDITOR_KEY", "--save-bundle", bundle, "--html", html], {
      MY_AUDITOR_KEY: auditor.privateKey,
    });
    expect(withKey.code, withKey.stderr).to.equal(0);
    expect((JSON.parse(withKey.stdout) as { reports: VerificationReport[] }).reports[0].verdict).to.equal("valid");
    // A bundle saved from an encrypted copy records what the mirror served (ciphertext): no plaintext in it, and
    // offline it can't be opened (no keys.json in a bundle), so could not verify, never valid.
    expect(fs.readFileSync(bundle, "utf8")).to.not.include(marker);
    expect(fs.readFileSync(html, "utf8")).to.include("valid").and.not.include(marker);
    const offline = await runCli(
      [
        "--json",
        "--quiet",
        "--rpc",
        node.url,
        "verify",
        bundle,
        "--registries",
        `${registries.model},${registries.certificate},${registries.instance}`,
        "--chain-id",
        String(deployment.chainId),
        "--ens-registry",
        deployment.ens.registry,
        "--auditor-key-env",
        "MY_AUDITOR_KEY",
      ],
      { ...env, MY_AUDITOR_KEY: auditor.privateKey },
    );
    expect(offline.code, offline.stdout + offline.stderr).to.equal(2);
    const without = await verify([]);
    expect(without.code, without.stderr).to.equal(2);
    expect(without.stdout + without.stderr).to.include("MIRROR_KEY_REQUIRED");
  });
});
