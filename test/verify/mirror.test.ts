import { expect } from "chai";
import { isStatetrailError } from "../../src/errors";
import { joinKey, parseS3Url, s3Url } from "../../src/net/s3";
import { DEFAULT_MAX_BYTES, isMirrorUrl, MIRROR_NOTE, mirrorLocation } from "../../src/verify";
import { type VerifyContext } from "../../src/verify/context";
import { FetchSession } from "../../src/verify/fetcher";
import { MirrorReader } from "../../src/verify/mirror";
import { type Fetcher } from "../../src/verify/types";
import { PROTOCOL_VERSION } from "../../src/protocol/schema";
import { mirrorKeysOf, newDataKey, sealObject, uncompressedPublicKey } from "../../src/protocol/envelope";
import { Wallet } from "ethers";

const H = "a".repeat(64);
const M = "b".repeat(64);
const S = "c".repeat(64);

function throwsCode(run: () => unknown, code: string): void {
  try {
    run();
  } catch (error) {
    expect(isStatetrailError(error) && error.code).to.equal(code);
    return;
  }
  expect.fail("expected an error");
}

describe("mirror addressing", function () {
  it("parses s3:// URLs and refuses what is not one", function () {
    expect(parseS3Url("s3://audit")).to.deep.equal({ bucket: "audit", key: "" });
    expect(parseS3Url("s3://audit/acme/2026/")).to.deep.equal({ bucket: "audit", key: "acme/2026" });
    expect(s3Url({ bucket: "audit", key: "acme" })).to.equal("s3://audit/acme");
    expect(joinKey("", "/models/x")).to.equal("models/x");
    expect(joinKey("acme", "models/x")).to.equal("acme/models/x");
    throwsCode(() => parseS3Url("https://audit/acme"), "INVALID_ARGUMENT");
    throwsCode(() => parseS3Url("s3://Bad_Bucket/x"), "INVALID_ARGUMENT");
    throwsCode(() => parseS3Url("s3://audit/a/../b"), "INVALID_ARGUMENT");
  });

  it("finds the mirror's root and instance from a protocol URL", function () {
    expect(mirrorLocation(`s3://audit/acme/instances/${H}/protocol`)).to.deep.equal({
      base: "s3://audit/acme",
      instanceHash: H,
    });
    expect(mirrorLocation(`https://cdn.example/x/instances/${H}/protocol`).base).to.equal("https://cdn.example/x");
    throwsCode(() => mirrorLocation(`s3://audit/acme/instances/${H}/input`), "INVALID_ARGUMENT");
    throwsCode(() => mirrorLocation(`ftp://audit/instances/${H}/protocol`), "INVALID_ARGUMENT");
    expect(isMirrorUrl("s3://a/b")).to.equal(true);
    expect(isMirrorUrl("http://a/b")).to.equal(true);
    expect(isMirrorUrl("https://a/b")).to.equal(false);
  });
});

describe("MirrorReader", function () {
  const protocolOf = (instance: string, issuerUrl = "https://issuer.test:8443") =>
    JSON.stringify({
      protocol_version: PROTOCOL_VERSION,
      chain_id: 31337,
      registries: {
        model: "0x" + "01".repeat(20),
        certificate: "0x" + "02".repeat(20),
        instance: "0x" + "03".repeat(20),
      },
      issuer: { address: "0x" + "11".repeat(20), ens_name: null, url: issuerUrl, certificate_fingerprint: S },
      model_hash: M,
      model_data: `${issuerUrl}/models/${M}`,
      instance_hash: instance,
      instance_data: `${issuerUrl}/instances/${instance}/input`,
      instance_nonce: S,
      input_digest: S,
      created: { block_nr: 1, transaction_hash: "0x" + "cd".repeat(32) },
      status: "running",
      head: { seq: -1, state_hash: instance },
      terminated: null,
      entries: 0,
      page_size: 2,
      accumulator: instance,
      signature: "0x",
    });

  function setup(files: Record<string, string>, url: string) {
    const storage: string[] = [];
    const fallback: string[] = [];
    const fetcher: Fetcher = async (u) => {
      storage.push(u);
      if (!(u in files)) throw new Error(`not on the mirror: ${u}`);
      return { bytes: Buffer.from(files[u]), certificate: null };
    };
    const reader = new MirrorReader({ fetcher }, async (u) => {
      fallback.push(u);
      throw new Error("no network here");
    });
    const context = {
      input: { url },
      web: new FetchSession(reader.fetcher, 1000),
      settings: { concurrency: 1, maxBytes: DEFAULT_MAX_BYTES, maxDiagnostics: 0 },
      protocol: null,
      pages: null,
      origin: null,
      certificate: null,
    } as unknown as VerifyContext;
    return { reader, context, storage, fallback };
  }

  it("reads the protocol from the mirror, skips V1 with the note and rewrites only the issuer's content URLs", async function () {
    const url = `s3://audit/acme/instances/${H}/protocol`;
    const { reader, context, storage, fallback } = setup({ [url]: protocolOf(H) }, url);
    const outcome = await reader.read(context);
    expect(outcome.status).to.equal("skip");
    expect(outcome.detail).to.include(MIRROR_NOTE);
    expect(context.origin).to.equal("https://issuer.test:8443");
    expect(context.certificate).to.equal(null);
    expect(storage).to.deep.equal([url]);
    expect(reader.rewrite(`https://issuer.test:8443/states/${S}`)).to.equal(`s3://audit/acme/states/${S}`);
    expect(reader.rewrite(`https://issuer.test:8443/models/${M}`)).to.equal(`s3://audit/acme/models/${M}`);
    expect(reader.rewrite(`https://issuer.test:8443/instances/${H}/input`)).to.equal(
      `s3://audit/acme/instances/${H}/input`,
    );
    expect(reader.rewrite(`https://issuer.test:8443/instances/${H}/protocol/pages/7`)).to.equal(
      `s3://audit/acme/instances/${H}/protocol/pages/7`,
    );
    expect(reader.rewrite(`https://issuer.test:8443/instances/${H}/protocol/pages/07`)).to.equal(null);
    expect(reader.rewrite(`https://issuer.test:8443/instances/${H}/protocol/pages/-1`)).to.equal(null);
    expect(reader.rewrite(`https://issuer.test:8443/states/${S}/../../x`)).to.equal(null);
    expect(reader.rewrite(`https://issuer.test:8443/.well-known/statetrail.json`)).to.equal(null);
    expect(reader.rewrite(`https://other.test/states/${S}`)).to.equal(null);
    await reader.fetcher(`https://other.test/states/${S}`, { maxBytes: 10, timeoutMs: 10 }).catch(() => undefined);
    expect(fallback).to.deep.equal([`https://other.test/states/${S}`]);
  });

  it("reads the head's pages from the mirror under the issuer's page paths, through the verification's session", async function () {
    const url = `https://cdn.example/acme/instances/${H}/protocol`;
    const page0 = `https://cdn.example/acme/instances/${H}/protocol/pages/0`;
    const { reader, context, storage, fallback } = setup({ [url]: protocolOf(H), [page0]: "page zero\n" }, url);
    expect((await reader.read(context)).status).to.equal("skip");
    expect(context.pages, "V1 sets the pages").to.not.equal(null);
    expect(context.pages!.describe(0)).to.equal(page0);
    expect((await context.pages!.read(0)).toString()).to.equal("page zero\n");
    expect(storage).to.deep.equal([url, page0]);
    // A page the mirror does not hold is an error of the step that reads it (could not verify), never a network read.
    const missing = await context.pages!.read(1).then(
      () => null,
      (error: unknown) => error as Error,
    );
    expect(missing?.message).to.contain("not on the mirror");
    expect(fallback).to.deep.equal([]);
  });

  it("refuses a whole protocol (entries inline) at the head's URL: the head schema is strict", async function () {
    const url = `s3://audit/acme/instances/${H}/protocol`;
    const whole = JSON.stringify({ ...JSON.parse(protocolOf(H)), instance_protocol: [] });
    const { reader, context } = setup({ [url]: whole }, url);
    const outcome = await reader.read(context);
    expect(outcome.status).to.equal("fail");
    expect(outcome.code).to.equal("PROTOCOL_INVALID");
    expect(context.pages).to.equal(null);
  });

  it("fails a head whose model or input URL is not the issuer's content URL, and never reads it from the issuer", async function () {
    const url = `s3://audit/acme/instances/${H}/protocol`;
    const head = { ...JSON.parse(protocolOf(H)), model_data: "https://issuer.test:8443/other/model.json" };
    const { reader, context, storage, fallback } = setup({ [url]: JSON.stringify(head) }, url);
    const outcome = await reader.read(context);
    expect(outcome.status).to.equal("fail");
    expect(outcome.detail).to.contain("model_data");
    // The steps still run (as in URL mode), but such a URL is read neither from the mirror nor from the issuer.
    const read = await context.web.get(head.model_data, 1000).then(
      () => null,
      (error: unknown) => error as Error,
    );
    expect(read?.message).to.contain("not one of the issuer's content paths");
    expect(storage).to.deep.equal([url]);
    expect(fallback).to.deep.equal([]);
  });

  it("fails a copy of another instance, a non-https issuer and a URL that names no instance", async function () {
    const url = `s3://audit/acme/instances/${H}/protocol`;
    let { reader, context } = setup({ [url]: protocolOf(M) }, url);
    let outcome = await reader.read(context);
    expect(outcome.status).to.equal("fail");
    expect(outcome.detail).to.include(`holds the protocol of instance ${M}`);

    ({ reader, context } = setup({ [url]: protocolOf(H, "http://issuer.test") }, url));
    outcome = await reader.read(context);
    expect(outcome.status).to.equal("fail");

    ({ reader, context } = setup({}, "s3://audit/acme/protocol.json"));
    outcome = await reader.read(context);
    expect(outcome.status).to.equal("fail");

    ({ reader, context } = setup({}, url));
    outcome = await reader.read(context);
    expect(outcome.status, "missing on the mirror: could not verify").to.equal("error");
  });

  it("an encrypted copy: keys.json and the head opened with the key; content paths mapped under the instance, opened", async function () {
    const auditor = Wallet.createRandom();
    const key = newDataKey();
    const base = "s3://audit/acme";
    const url = `${base}/instances/${H}/protocol`;
    const sealedAt = (relative: string, text: string) => sealObject(key, H, relative, Buffer.from(text));
    const files: Record<string, Buffer> = {
      [url]: sealedAt(`instances/${H}/protocol`, protocolOf(H)),
      [`${base}/instances/${H}/keys.json`]: Buffer.from(
        JSON.stringify(
          mirrorKeysOf(H, key, [
            { address: auditor.address, publicKey: uncompressedPublicKey(auditor.signingKey.publicKey) },
          ]),
        ),
      ),
      [`${base}/instances/${H}/states/${S}`]: sealedAt(`instances/${H}/states/${S}`, "state bytes"),
      // Sealed for the right instance but stored at another path: does not open.
      [`${base}/instances/${H}/models/${M}`]: sealedAt(`instances/${H}/states/${S}`, "state bytes"),
    };
    const storage: string[] = [];
    const fetcher: Fetcher = async (u) => {
      storage.push(u);
      if (!(u in files)) throw new Error(`not on the mirror: ${u}`);
      return { bytes: files[u], certificate: null };
    };
    const reader = new MirrorReader({ fetcher, decryptionKey: async () => auditor.privateKey }, async () => {
      throw new Error("no network here");
    });
    const context = {
      input: { url },
      web: new FetchSession(reader.fetcher, 1000),
      settings: { concurrency: 1, maxBytes: DEFAULT_MAX_BYTES, maxDiagnostics: 0 },
      protocol: null,
      pages: null,
      origin: null,
      certificate: null,
    } as unknown as VerifyContext;
    const outcome = await reader.read(context);
    expect(outcome.status, outcome.detail).to.equal("skip");
    expect(context.protocol!.instance_hash).to.equal(H);
    expect(reader.rewrite(`https://issuer.test:8443/states/${S}`)).to.equal(`${base}/instances/${H}/states/${S}`);
    expect(reader.rewrite(`https://issuer.test:8443/models/${M}`)).to.equal(`${base}/instances/${H}/models/${M}`);
    expect(reader.rewrite(`https://issuer.test:8443/instances/${M}/input`), "another instance").to.equal(null);
    const state = await context.web.get(`https://issuer.test:8443/states/${S}`, 1000);
    expect(state.bytes.toString()).to.equal("state bytes");
    const moved = await context.web.get(`https://issuer.test:8443/models/${M}`, 1000).then(
      () => null,
      (error: unknown) => error as { code?: string },
    );
    expect(moved?.code).to.equal("MIRROR_DECRYPT_FAILED");
  });
});
