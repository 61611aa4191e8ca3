import fs from "node:fs";
import https from "node:https";
import { expect } from "chai";
import { FetchError, pinnedFetch } from "../../src/net/pinned-fetch";
import { sealedFields } from "../../src/protocol/pages";
import { PROTOCOL_VERSION, type InstanceProtocol, type UnsignedProtocol } from "../../src/protocol/schema";
import { startServer, type RunningServer } from "../../src/server/https";
import { TIMELINE_CSP } from "../../src/server/timeline";
import { makeCertificate, makeHome, type TestCertificate, type TestHome } from "./fixtures";

/**
 * A fixture protocol (of the current version, paged since version 3: the name stayed) with `pageSize` entries per
 * page (sealed: entries and accumulator recomputed).
 */
export function asVersion3(protocol: InstanceProtocol, pageSize: number): InstanceProtocol {
  const unsigned = {
    ...protocol,
    protocol_version: PROTOCOL_VERSION,
    page_size: pageSize,
  } as unknown as UnsignedProtocol;
  return { ...sealedFields(unsigned), signature: "0xnot-checked-by-the-server" };
}

const HOSTILE = `Last <img src=x onerror="window.pwned=1"> {{verify_command}} <!--instance-view-->`;

/** The timeline routes without a browser: headers, assets, the model list and the verification route's errors. */
describe("timeline routes", function () {
  let cert: TestCertificate;
  let fixture: TestHome;
  let server: RunningServer;

  before(async function () {
    cert = makeCertificate();
    fixture = makeHome();
    fixture.home.writeProtocol(asVersion3(fixture.protocol(2), 1024));
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

/**
 * Protocol v3 (issue 16): an instance's page is rendered from its head and ONE page of entries, never the whole
 * protocol, with links to the other pages that work without JavaScript.
 */
describe("timeline routes: one instance, from its head and one page", function () {
  let cert: TestCertificate;
  let fixture: TestHome;
  let server: RunningServer;
  let protocol: InstanceProtocol;

  before(async function () {
    cert = makeCertificate();
    fixture = makeHome("https://127.0.0.1:8443", 10);
    const whole = fixture.protocol(10, "succeeded");
    whole.instance_protocol[9] = { ...whole.instance_protocol[9], state_name: HOSTILE };
    protocol = asVersion3(whole, 3); // pages 0-2 of 3 states, page 3 of 1
    fixture.home.writeProtocol(protocol);
    server = await startServer({
      home: fixture.home,
      host: "127.0.0.1",
      port: 0,
      certPem: cert.certPem,
      keyPem: cert.keyPem,
      timeline: true,
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
  const seqsIn = (html: string): number[] =>
    [...html.matchAll(/<li class="state[^"]*" data-seq="(\d+)"/g)].map((m) => Number(m[1]));

  it("shows the head and the latest page, the instance's command, and links to the other pages", async function () {
    const response = await get(`/instances/${fixture.instanceHash}/timeline`);
    expect(response.headers["content-type"]).to.match(/^text\/html/);
    expect(response.headers["content-security-policy"]).to.equal(TIMELINE_CSP);
    const html = response.body.toString("utf8");
    expect(html).to.include(`<section id="instance-static" data-instance="${fixture.instanceHash}">`);
    expect(html).to.include('data-status="succeeded"').and.include('<span id="static-count" data-count="10">10</span>');
    expect(html).to.include("4 of 3 states each");
    expect(seqsIn(html)).to.deep.equal([9]);
    expect(html).to.include("page 4 of 4, states #9–#9");
    expect(html).to.include('href="?page=0" rel="first"').and.include('href="?page=2" rel="prev"');
    expect(html).not.to.include('rel="next"');
    // The banner names this instance and its issuer, without JavaScript.
    const command = /<code id="verify-command">([^<]*)<\/code>/.exec(html)?.[1];
    expect(command).to.equal(
      `npx statetrail verify acme.statetrail.test --instance ${fixture.instanceHash} --network &lt;network&gt;`,
    );
    expect(html).to.include("The issuer's server says so — this is not an independent verdict.");
    // The hostile state name is text, and no placeholder or marker inside data is expanded.
    expect(html).not.to.include("<img src=x");
    expect(html).to.include(
      "Last &lt;img src=x onerror=&quot;window.pwned=1&quot;&gt; {{verify_command}} &lt;!--instance-view--&gt;",
    );
    expect(html.match(/<section id="instance-static"/g)).to.have.length(1);
  });

  it("shows any one page on request, reading that page only", async function () {
    // Pages 1 and 2 gone from the store: pages 0 and 3 still render (nothing else is read).
    const moved = [1, 2].map((index) => {
      const file = fixture.home.pageFile(fixture.instanceHash, index);
      fs.renameSync(file, `${file}.away`);
      return file;
    });
    try {
      const first = (await get(`/instances/${fixture.instanceHash}/timeline?page=0`)).body.toString("utf8");
      expect(seqsIn(first)).to.deep.equal([0, 1, 2]);
      expect(first).to.include("page 1 of 4, states #0–#2");
      expect(first).to.include('href="?page=1" rel="next"').and.include('href="?page=3" rel="last"');
      expect(first).not.to.include('rel="prev"');
      expect(
        seqsIn((await get(`/instances/${fixture.instanceHash}/timeline?page=latest`)).body.toString("utf8")),
      ).to.deep.equal([9]);
      const missing = (await get(`/instances/${fixture.instanceHash}/timeline?page=1`)).body.toString("utf8");
      expect(missing).to.include("Page 2 (pages/1) could not be read").and.include('data-count="10"');
    } finally {
      for (const file of moved) fs.renameSync(`${file}.away`, file);
    }
    expect(
      seqsIn((await get(`/instances/${fixture.instanceHash}/timeline?page=1`)).body.toString("utf8")),
    ).to.deep.equal([3, 4, 5]);
  });

  /** The events of `path` until the `status` event, as [event, id] pairs. */
  function events(path: string, headers: Record<string, string> = {}): Promise<[string, string][]> {
    return new Promise((resolve, reject) => {
      const request = https.get(`${server.url}${path}`, { rejectUnauthorized: false, headers }, (response) => {
        let text = "";
        response.setEncoding("utf8");
        response.on("data", (chunk: string) => {
          text += chunk;
          if (!text.includes("event: status")) return;
          request.destroy();
          resolve(
            text
              .split("\n\n")
              .map((block) => [/^event: (.*)$/m.exec(block)?.[1] ?? "", /^id: (.*)$/m.exec(block)?.[1] ?? ""])
              .filter(([event]) => event !== "") as [string, string][],
          );
        });
      });
      request.on("error", reject);
    });
  }

  it("streams live states from ?after=<seq> (the page's first connection), Last-Event-ID taking precedence", async function () {
    const base = `/instances/${fixture.instanceHash}/events`;
    expect(await events(`${base}?after=8`)).to.deep.equal([
      ["state", "9"],
      ["status", ""],
    ]);
    expect(await events(`${base}?after=8`, { "Last-Event-ID": "6" })).to.deep.equal([
      ["state", "7"],
      ["state", "8"],
      ["state", "9"],
      ["status", ""],
    ]);
    expect((await events(base)).filter(([event]) => event === "state")).to.have.length(10);
    expect(await status(`${base}?after=nine`)).to.equal(400);
  });

  it("shows an instance without states (no page file yet) as such", async function () {
    const empty = asVersion3(fixture.protocol(0, "running"), 3);
    fixture.home.writeProtocol(empty);
    fs.rmSync(fixture.home.pageFile(fixture.instanceHash, 0));
    try {
      const html = (await get(`/instances/${fixture.instanceHash}/timeline`)).body.toString("utf8");
      expect(html).to.include('data-count="0"').and.include("No state has been registered yet.");
      expect(html).not.to.include("could not be read");
    } finally {
      fixture.home.writeProtocol(protocol);
    }
  });

  it("answers a page or instance that does not exist, and a malformed hash, with an error", async function () {
    expect(await status(`/instances/${fixture.instanceHash}/timeline?page=4`)).to.equal(400);
    expect(await status(`/instances/${fixture.instanceHash}/timeline?page=-1`)).to.equal(400);
    expect(await status(`/instances/${"f".repeat(64)}/timeline`)).to.equal(404);
    expect(await status(`/instances/NOT-A-HASH/timeline`)).to.equal(400);
  });
});
