import { expect } from "chai";
import https from "node:https";
import type net from "node:net";
import { FetchError, pinnedFetch, sseSubscribe } from "../../src/net/pinned-fetch";
import { makeCertificate, type TestCertificate } from "../server/fixtures";

/** What sign-in needs of pinned-fetch.ts: request bodies, and HTTP errors that keep their headers and certificate. */
describe("net: pinned fetch for sign-in (bodies, challenges, SSE headers)", function () {
  this.timeout(20_000);
  let cert: TestCertificate;
  let server: https.Server;
  let url: string;
  const received: Array<{ method: string; path: string; headers: Record<string, unknown>; body: string }> = [];

  before(async () => {
    cert = makeCertificate();
    server = https.createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8");
        received.push({ method: req.method ?? "", path: req.url ?? "", headers: req.headers, body });
        if (req.url === "/echo") {
          res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ got: body }));
        } else if (req.url === "/private") {
          res
            .writeHead(401, {
              "content-type": "application/json",
              "www-authenticate": 'SIWE realm="x", nonce_uri="/n"',
            })
            .end(JSON.stringify({ error: { code: "AUTH_REQUIRED", message: "sign in first" } }));
        } else if (req.url === "/events") {
          if (req.headers.authorization !== "Bearer t0ken-t0ken-t0ken") {
            res.writeHead(401, { "www-authenticate": 'SIWE realm="x", nonce_uri="/n"' }).end();
            return;
          }
          res.writeHead(200, { "content-type": "text/event-stream" });
          res.write("data: hello\n\n");
        } else {
          res.writeHead(404).end();
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `https://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  beforeEach(() => (received.length = 0));

  it("POSTs a body with its Content-Length, over the pinned connection", async () => {
    const body = JSON.stringify({ message: "héllo", signature: "0x00" });
    const response = await pinnedFetch(`${url}/echo`, {
      method: "POST",
      body,
      headers: { "content-type": "application/json" },
      fingerprint: cert.fingerprint,
    });
    expect(JSON.parse(response.body.toString("utf8"))).to.deep.equal({ got: body });
    expect(received[0]).to.deep.include({ method: "POST", body });
    expect(received[0].headers["content-length"]).to.equal(String(Buffer.byteLength(body)));
  });

  it("an HTTP error keeps the response's headers (the challenge) and the certificate it came over", async () => {
    const error = await pinnedFetch(`${url}/private`, { method: "POST", body: "{}" }).then(
      () => undefined,
      (caught: unknown) => caught as FetchError,
    );
    expect(error).to.be.instanceOf(FetchError);
    expect(error!.status).to.equal(401);
    expect(error!.serverCode).to.equal("AUTH_REQUIRED");
    expect(error!.message).to.match(
      /^POST https:\/\/127\.0\.0\.1:\d+\/private: HTTP 401 AUTH_REQUIRED: sign in first$/,
    );
    expect(error!.headers?.["www-authenticate"]).to.equal('SIWE realm="x", nonce_uri="/n"');
    expect(error!.certificate?.fingerprint).to.equal(cert.fingerprint);
  });

  it("an event stream sends the extra headers on every connection, and keeps its own", async () => {
    const refused = sseSubscribe(`${url}/events`, { fingerprint: cert.fingerprint, onEvent: () => undefined });
    const error = (await refused.ready.then(
      () => undefined,
      (caught: unknown) => caught,
    )) as FetchError;
    expect(error.status).to.equal(401);
    expect(String(error.headers?.["www-authenticate"])).to.match(/^SIWE /);
    expect(error.certificate?.fingerprint).to.equal(cert.fingerprint);
    const events: string[] = [];
    const stream = sseSubscribe(`${url}/events`, {
      fingerprint: cert.fingerprint,
      headers: { authorization: "Bearer t0ken-t0ken-t0ken", accept: "text/html" },
      onEvent: (event) => events.push(event.data),
    });
    try {
      await stream.ready;
    } finally {
      stream.close();
    }
    const last = received.at(-1)!;
    expect(last.headers.authorization).to.equal("Bearer t0ken-t0ken-t0ken");
    expect(last.headers.accept).to.equal("text/event-stream");
  });
});
