import { expect } from "chai";
import { FetchError, pinnedFetch } from "../../src/net/pinned-fetch";
import { startServer, type RunningServer } from "../../src/server/https";
import { TIMELINE_CSP } from "../../src/server/timeline";
import { makeCertificate, makeHome, type TestCertificate, type TestHome } from "./fixtures";

/** The timeline routes without a browser: headers, assets, the model list and the verification route's errors. */
describe("timeline routes", function () {
  let cert: TestCertificate;
  let fixture: TestHome;
  let server: RunningServer;

  before(async function () {
    cert = makeCertificate();
    fixture = makeHome();
    fixture.home.writeProtocol(fixture.protocol(2));
    server = await startServer({
      home: fixture.home,
      host: "127.0.0.1",
      port: 0,
      certPem: cert.certPem,
      keyPem: cert.keyPem,
      timeline: true, // no chain connection: the page, but no server-side verification
      log: () => undefined,
    });
  });

  after(async function () {
    await server?.close();
    fixture?.cleanup();
  });

  const get = (path: string) => pinnedFetch(`${server.url}${path}`, { fingerprint: cert.fingerprint });
  const status = (path: string) =>
    get(path).then(
      (response) => response.status,
      (error: FetchError) => error.status,
    );

  it("serves the page and its assets from this origin under the strict CSP", async function () {
    const page = await get("/");
    expect(page.headers["content-type"]).to.match(/^text\/html/);
    expect(page.headers["content-security-policy"]).to.equal(TIMELINE_CSP);
    const html = page.body.toString("utf8");
    expect(html).to.include('<script src="/assets/timeline.js" defer></script>');
    expect(html).to.include('<link rel="stylesheet" href="/assets/timeline.css" />');
    expect(html).not.to.match(/https?:\/\//); // nothing from elsewhere

    const script = await get("/assets/timeline.js");
    expect(script.headers["content-type"]).to.match(/^text\/javascript/);
    expect(script.headers["content-security-policy"]).to.equal(TIMELINE_CSP);
    expect(script.body.toString("utf8")).not.to.match(/innerHTML|eval\(|new Function/);
    const style = await get("/assets/timeline.css");
    expect(style.headers["content-type"]).to.match(/^text\/css/);
    expect(style.body.toString("utf8")).not.to.match(/@import|url\((?!data:)/);

    expect(await status("/assets/other.js")).to.equal(404);
    expect(await status("/assets/..%2f..%2fpackage.json")).to.equal(404);
    // The JSON API keeps its own, stricter policy.
    const protocol = await get(`/instances/${fixture.instanceHash}/protocol`);
    expect(protocol.headers["content-security-policy"]).to.match(/^default-src 'none'; frame-ancestors 'none'/);
  });

  it("lists the published models", async function () {
    const response = await get("/models");
    expect(JSON.parse(response.body.toString("utf8"))).to.deep.equal([
      { model_hash: fixture.modelHash, bytes: fixture.modelBytes.length, comment: null, states: 2 },
    ]);
  });

  it("answers the verification route with coded errors when it can't verify", async function () {
    expect(await status(`/instances/${fixture.instanceHash}/verification`)).to.equal(503);
    expect(await status(`/instances/${"f".repeat(64)}/verification`)).to.equal(503);
    expect(await status(`/instances/NOT-A-HASH/verification`)).to.equal(400);
    const error = await get(`/instances/${fixture.instanceHash}/verification`).catch((e: FetchError) => e);
    expect((error as FetchError).serverCode).to.equal("VERIFY_INCOMPLETE");
  });
});
