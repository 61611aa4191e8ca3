import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { DeleteObjectCommand, HeadObjectCommand } from "@aws-sdk/client-s3";
import { expect } from "chai";
import S3rver from "s3rver";
import { freePort } from "../../src/chain/node";
import { createEngine } from "../../src/engine";
import { loadModel } from "../../src/model/load";
import { createS3Client, getObjectBytes, putObjectBytes, type S3Settings } from "../../src/net/s3";
import { contentOf, readStateDocument, sealState } from "../../src/protocol/disclosure";
import { accumulatorOf, encodePages, entryLine, headOf, pageCount } from "../../src/protocol/pages";
import { type InstanceProtocol } from "../../src/protocol/schema";
import { publishToMirror } from "../../src/publish/mirror";
import {
  ensReaderFromProvider,
  MIRROR_NOTE,
  trustedFromDeployment,
  verifyProtocol,
  type VerificationReport,
} from "../../src/verify";
import { setupIssuer, type TestIssuer } from "../helpers/issuer";
import { runCli } from "../helpers/cli-run";
import { useHardhatNode } from "../helpers/node-process";

const ROOT = path.resolve(__dirname, "..", "..");
const EXAMPLES = path.join(ROOT, "examples");
const CREDENTIALS = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };
const PAGE_SIZE = 4;

function statuses(report: VerificationReport): Record<string, string> {
  return Object.fromEntries(report.steps.map((step) => [step.id, step.status]));
}

describe("mirrors: publish to S3-compatible storage, verify the copy", function () {
  this.timeout(60_000);
  const node = useHardhatNode();
  let issuer: TestIssuer;
  let protocol: InstanceProtocol;
  let storage: S3rver;
  let endpoint: string;
  let s3: S3Settings;
  let storageDir: string;

  before(async function () {
    this.timeout(90_000);
    storageDir = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-s3-"));
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

    issuer = await setupIssuer(node.url, { label: "mirrored" });
    const engine = createEngine({
      engine: "local",
      handlers: path.join(EXAMPLES, "order-fulfilment.handlers.js"),
      skipWaits: true,
    });
    const model = await loadModel(path.join(EXAMPLES, "order-fulfilment.asl.json"));
    // Pages of 4 entries: the mirror holds several closed pages and an open one.
    const head = await issuer
      .tracker(engine, { pageSize: PAGE_SIZE })
      .run(model, fs.readFileSync(path.join(EXAMPLES, "order-fulfilment.input.json")));
    protocol = issuer.home.readProtocol(head.instance_hash);
  });

  after(async function () {
    await issuer?.close();
    await storage?.close();
    fs.rmSync(storageDir, { recursive: true, force: true });
  });

  const verifyMirror = (url: string): Promise<VerificationReport> =>
    verifyProtocol({
      input: { url },
      provider: issuer.provider,
      trusted: trustedFromDeployment(issuer.deployment, "test deployment"),
      ens: ensReaderFromProvider(issuer.provider),
      mirror: { s3 },
    });

  it("copies the head, every page, model, input and every state under the server's paths", async function () {
    const result = await publishToMirror({ home: issuer.home, mirror: "s3://audit/acme/", s3 });
    const h = protocol.instance_hash;
    expect(result.mirror).to.equal("s3://audit/acme");
    expect(result.instances).to.deep.equal([
      {
        instance_hash: h,
        status: "succeeded",
        states: protocol.instance_protocol.length,
        protocol_url: `s3://audit/acme/instances/${h}/protocol`,
        encrypted_for: null,
        clear_because: "open",
      },
    ]);
    const states = new Set(protocol.instance_protocol.map((entry) => entry.state_hash));
    const pages = pageCount(protocol.instance_protocol.length, PAGE_SIZE);
    expect(pages).to.be.greaterThan(2);
    expect(result.objects).to.equal(3 + pages + states.size);

    const client = createS3Client(s3);
    const read = (key: string) =>
      getObjectBytes(client, { bucket: "audit", key }, { maxBytes: 1 << 24, timeoutMs: 5000 });
    expect(await read(`acme/instances/${h}/protocol`)).to.deep.equal(fs.readFileSync(issuer.home.protocolFile(h)));
    // The input document (every disclosure: a mirror has no access control), never the raw input file.
    const input = await read(`acme/instances/${h}/input`);
    expect(input).to.deep.equal(fs.readFileSync(issuer.home.inputDocumentFile(h)));
    expect(input.equals(issuer.home.readInput(h))).to.equal(false);
    expect(await read(`acme/models/${protocol.model_hash}`)).to.deep.equal(issuer.home.readModel(protocol.model_hash));
    for (const hash of states) expect(await read(`acme/states/${hash}`)).to.deep.equal(issuer.home.readState(hash));
    // The pages at the server's paths, byte for byte; a full page cached for good, the last one revalidated.
    const expected = encodePages(protocol);
    expect(expected).to.have.length(pages);
    for (let index = 0; index < pages; index += 1) {
      const key = `acme/instances/${h}/protocol/pages/${index}`;
      expect(await read(key), key).to.deep.equal(fs.readFileSync(issuer.home.pageFile(h, index)));
      expect(await read(key), key).to.deep.equal(expected[index]);
      const full = index < pages - 1 || protocol.instance_protocol.length % PAGE_SIZE === 0;
      const { CacheControl } = await client.send(new HeadObjectCommand({ Bucket: "audit", Key: key }));
      expect(CacheControl, key).to.equal(full ? "public, max-age=31536000, immutable" : "no-cache");
    }
    const { CacheControl } = await client.send(
      new HeadObjectCommand({ Bucket: "audit", Key: `acme/instances/${h}/protocol` }),
    );
    expect(CacheControl).to.equal("no-cache");
  });

  it("refuses to copy a store whose pages are not what the head commits to (nothing of the instance's head copied)", async function () {
    const h = protocol.instance_hash;
    const file = issuer.home.pageFile(h, 1);
    const original = fs.readFileSync(file);
    const lines = original.toString("utf8").split("\n");
    const edited = { ...protocol.instance_protocol[PAGE_SIZE + 1], timestamp: 1 };
    lines[2] = entryLine(edited);
    try {
      fs.writeFileSync(file, lines.join("\n"));
      const refused = await publishToMirror({ home: issuer.home, mirror: "s3://audit/corrupt", s3 }).catch(
        (error: unknown) => error as Error & { code?: string },
      );
      expect((refused as { code?: string }).code).to.equal("PAGE_INVALID");
      const client = createS3Client(s3);
      const head = await client
        .send(new HeadObjectCommand({ Bucket: "audit", Key: `corrupt/instances/${h}/protocol` }))
        .then(
          () => "copied",
          () => "absent",
        );
      expect(head).to.equal("absent");
      // A page missing altogether.
      fs.rmSync(file);
      const missing = await publishToMirror({ home: issuer.home, mirror: "s3://audit/corrupt", s3 }).catch(
        (error: unknown) => error as { code?: string },
      );
      expect((missing as { code?: string }).code).to.equal("INTERNAL");
    } finally {
      fs.writeFileSync(file, original);
    }
  });

  it("verifies a genuine copy from s3:// and from http://, without contacting the issuer's server", async function () {
    await issuer.server.close(); // the issuer is offline: only the mirror and the chain remain
    for (const url of [
      `s3://audit/acme/instances/${protocol.instance_hash}/protocol`,
      `${endpoint}/audit/acme/instances/${protocol.instance_hash}/protocol`,
    ]) {
      const report = await verifyMirror(url);
      expect(report.verdict, `${url}: ${JSON.stringify(report.steps, null, 1)}`).to.equal("valid");
      expect(report.source).to.equal(url);
      expect(statuses(report)).to.include({
        V0: "pass",
        V1: "skip",
        V2: "pass",
        V3: "skip",
        V4: "pass",
        V5: "pass",
        V6: "pass",
        V7: "pass",
        V8: "pass",
      });
      const v1 = report.steps.find((step) => step.id === "V1")!;
      expect(v1.detail).to.include(MIRROR_NOTE);
      expect(v1.required).to.equal(false);
      expect(report.steps.find((step) => step.id === "V3")!.required).to.equal(false);
      for (const step of report.steps.filter((s) => !["V1", "V3"].includes(s.id))) expect(step.required).to.equal(true);
    }
  });

  it("fails a tampered copy: altered state data (V6), an edited protocol (V8), a withheld state", async function () {
    await publishToMirror({ home: issuer.home, mirror: "s3://audit/tampered", s3 });
    const client = createS3Client(s3);
    const put = (key: string, bytes: Buffer) =>
      putObjectBytes(client, { bucket: "audit", key: `tampered/${key}` }, bytes, {
        contentType: "application/json",
        cacheControl: "no-cache",
      });
    const url = `s3://audit/tampered/instances/${protocol.instance_hash}/protocol`;

    const entry = protocol.instance_protocol[3];
    const stored = readStateDocument(issuer.home.readState(entry.state_hash));
    await put(`states/${entry.state_hash}`, sealState({ ...contentOf(stored), input: { amount: 1_000_000 } }).document);
    let report = await verifyMirror(url);
    expect(report.verdict).to.equal("invalid");
    expect(statuses(report)).to.include({ V6: "fail", V8: "pass" });
    expect(report.steps.find((step) => step.id === "V6")!.detail).to.match(
      /seq 3 .* hash to [0-9a-f]{64}, not state_hash/,
    );

    await put(`states/${entry.state_hash}`, issuer.home.readState(entry.state_hash)); // repaired
    // An entry edited in its page (the head kept): the page no longer chains to the signed accumulator.
    const edited = structuredClone(protocol);
    edited.instance_protocol[3].timestamp += 60;
    await put(`instances/${protocol.instance_hash}/protocol/pages/0`, encodePages(edited)[0]);
    report = await verifyMirror(url);
    expect(report.verdict).to.equal("invalid");
    await put(`instances/${protocol.instance_hash}/protocol/pages/0`, encodePages(protocol)[0]); // repaired

    // A head that withholds the last entry (count, accumulator and head recomputed; the signature can't be).
    const withheld = structuredClone(protocol);
    withheld.instance_protocol.pop();
    withheld.head = {
      seq: withheld.instance_protocol.length - 1,
      state_hash: withheld.instance_protocol.at(-1)!.state_hash,
    };
    withheld.entries = withheld.instance_protocol.length;
    withheld.accumulator = accumulatorOf(withheld.instance_hash, withheld.instance_protocol);
    await put(`instances/${protocol.instance_hash}/protocol`, Buffer.from(JSON.stringify(headOf(withheld))));
    report = await verifyMirror(url);
    expect(report.verdict).to.equal("invalid");
    expect(statuses(report)).to.include({ V8: "fail" });

    await client.send(new DeleteObjectCommand({ Bucket: "audit", Key: `tampered/states/${entry.state_hash}` }));
    await put(
      `instances/${protocol.instance_hash}/protocol`,
      fs.readFileSync(issuer.home.protocolFile(protocol.instance_hash)),
    );
    report = await verifyMirror(url);
    expect(report.verdict, "a missing object can't be checked").to.equal("could-not-verify");
    expect(statuses(report)).to.include({ V6: "error" });
  });

  it("statetrail publish and statetrail verify s3://… on the command line", async function () {
    const env = {
      AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
      AWS_REGION: "us-east-1",
    };
    const published = await runCli(
      [
        "--json",
        "--quiet",
        "--home",
        issuer.home.root,
        "publish",
        "--mirror",
        "s3://audit/cli",
        "--endpoint",
        endpoint,
      ],
      env,
    );
    expect(published.code, published.stderr).to.equal(0);
    const result = JSON.parse(published.stdout) as { instances: { protocol_url: string }[] };
    const url = result.instances[0].protocol_url;
    expect(url).to.equal(`s3://audit/cli/instances/${protocol.instance_hash}/protocol`);

    const { registries, deployment } = issuer;
    const verified = await runCli(
      [
        "--json",
        "--quiet",
        "--rpc",
        node.url,
        "verify",
        url,
        "--registries",
        `${registries.model},${registries.certificate},${registries.instance}`,
        "--chain-id",
        String(deployment.chainId),
        "--ens-registry",
        deployment.ens.registry,
        "--s3-endpoint",
        endpoint,
      ],
      env,
    );
    expect(verified.code, verified.stderr).to.equal(0);
    const [report] = (JSON.parse(verified.stdout) as { reports: VerificationReport[] }).reports;
    expect(report.verdict).to.equal("valid");
    expect(statuses(report)).to.include({ V1: "skip", V3: "skip", V6: "pass", V7: "pass", V8: "pass" });
  });
});
