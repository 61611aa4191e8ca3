import { expect } from "chai";
import { Wallet } from "ethers";
import https from "node:https";
import fc from "fast-check";
import { sha256Hex } from "../../src/chain/hash";
import { buildSignInMessage } from "../../src/identity/siwe";
import { startServer, type RunningServer } from "../../src/server";
import { emptyPolicy, writePolicy } from "../../src/store/access";
import { runs, fuzzTimeout, watchUnhandledRejections } from "../fuzz/helpers";
import { makeCertificate, makeHome, type TestHome } from "./fixtures";

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

const HEX = "0123456789abcdef";

/**
 * Mode private on random requests (methods, paths with traversal and encodings, headers, tokens and cookies): an
 * anonymous caller, or a signed-in one without a grant, never gets a byte of data, whatever the spelling.
 */
describe("fuzz: access control in mode private", function () {
  this.timeout(fuzzTimeout());
  watchUnhandledRejections();
  let fixture: TestHome;
  let server: RunningServer;
  let agent: https.Agent;
  let token: string;
  let secrets: Buffer[];

  before(async function () {
    const cert = makeCertificate();
    fixture = makeHome("https://127.0.0.1:1", 6);
    fixture.home.writeProtocol(fixture.protocol(4));
    writePolicy(fixture.home, emptyPolicy("private"));
    server = await startServer({
      home: fixture.home,
      host: "127.0.0.1",
      port: 0,
      certPem: cert.certPem,
      keyPem: cert.keyPem,
      events: { maxClients: 50, heartbeatMs: 60_000 },
      timeline: true,
      access: { chainId: 31337 },
      log: () => undefined,
    });
    agent = new https.Agent({ keepAlive: true, maxSockets: 8, rejectUnauthorized: false });
    // A session without any grant.
    const wallet = Wallet.createRandom();
    const nonce = (JSON.parse((await request("GET", "/auth/nonce", {})).body.toString()) as { nonce: string }).nonce;
    const now = new Date();
    const message = buildSignInMessage({
      domain: new URL(server.url).host,
      address: wallet.address,
      uri: server.url,
      chainId: 31337,
      nonce,
      issuedAt: now,
      expirationTime: new Date(now.getTime() + 600_000),
    });
    const signIn = await request(
      "POST",
      "/auth/siwe",
      { "content-type": "application/json" },
      Buffer.from(JSON.stringify({ message, signature: await wallet.signMessage(message) })),
    );
    expect(signIn.status).to.equal(200);
    token = (JSON.parse(signIn.body.toString()) as { token: string }).token;
    // What must never be sent: the model, the input, any state, any head or page of the instance.
    secrets = [
      fixture.modelBytes,
      fixture.inputBytes,
      ...fixture.states.map((state) => state.bytes),
      Buffer.from('"accumulator"'),
      Buffer.from('"state_name"'),
      Buffer.from("StartAt"),
    ];
  });
  after(async function () {
    agent?.destroy();
    await server?.close();
    fixture?.cleanup();
  });

  function request(method: string, path: string, headers: Record<string, string>, body?: Buffer): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const req = https.request(
        { host: "127.0.0.1", port: server.port, method, path, headers, agent, servername: "localhost" },
        (res) => {
          const status = res.statusCode ?? 0;
          if (String(res.headers["content-type"]).startsWith("text/event-stream")) {
            res.destroy();
            return resolve({ status, headers: res.headers, body: Buffer.from("(an event stream was opened)") });
          }
          const chunks: Buffer[] = [];
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          res.on("end", () => resolve({ status, headers: res.headers, body: Buffer.concat(chunks) }));
          res.on("error", reject);
        },
      );
      req.setTimeout(10_000, () => req.destroy(new Error(`${method} ${path}: no answer in 10 s`)));
      req.on("error", reject);
      req.end(body);
    });
  }

  const encode = (text: string, every: number): string =>
    [...text].map((c, i) => (i % every === 0 ? `%${c.charCodeAt(0).toString(16)}` : c)).join("");
  const hashArb = fc.oneof(
    fc.constantFrom(
      () => fixture.modelHash,
      () => fixture.instanceHash,
      () => fixture.states[0].hash,
      () => fixture.states[5].hash,
      () => sha256Hex("absent"),
    ),
    fc.string({ unit: fc.constantFrom(...HEX), minLength: 64, maxLength: 64 }).map((h) => () => h),
  );
  const spelledHashArb = fc.tuple(hashArb, fc.constantFrom(0, 1, 2, 7, 64)).map(
    ([hash, every]) =>
      () =>
        every === 0 ? hash() : encode(hash(), every),
  );
  const prefixArb = fc.constantFrom(
    "/models/",
    "/states/",
    "/instances/",
    "/%6dodels/",
    "/./instances/",
    "//instances/",
    "/x/../states/",
    "/instances%2F",
    "/models%2f",
  );
  const tailArb = fc.constantFrom(
    "",
    "/",
    "/protocol",
    "/protocol/",
    "/input",
    "/events",
    "/timeline",
    "/verification",
    "/protocol/pages/0",
    "/protocol/pages/%30",
    "/%70rotocol",
    "/protocol%2Fpages%2F0",
    "?after=-1",
    "/input?x=1",
    ";x",
    "/..",
    "/../input",
  );
  const pathArb = fc.oneof(
    fc.tuple(prefixArb, spelledHashArb, tailArb).map(
      ([prefix, hash, tail]) =>
        () =>
          `${prefix}${hash()}${tail}`,
    ),
    fc
      .constantFrom("/instances", "/models", "/instances/", "/models/", "/instances?x", "/", "/auth/nonce")
      .map((path) => () => path),
  );
  const headersArb = fc.record(
    {
      authorization: fc.constantFrom("Bearer ", "Bearer x", "Basic Zm9vOmJhcg==", "bearer TOKEN", "Bearer TOKEN"),
      cookie: fc.constantFrom("statetrail_session=TOKEN", "statetrail_session=", "a=b", "statetrail_session=zz"),
      "last-event-id": fc.constantFrom("0", "-1", "abc"),
      "if-none-match": fc.constantFrom("*", `"${"0".repeat(64)}"`),
      origin: fc.constantFrom("https://evil.example", "null"),
    },
    { requiredKeys: [] },
  );

  it("anonymous or without a grant: never a byte of data, whatever the spelling", async function () {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom("GET", "GET", "GET", "HEAD"),
        pathArb,
        headersArb,
        async (method, makePath, headers) => {
          const path = makePath();
          const sent = Object.fromEntries(
            Object.entries(headers).map(([key, value]) => [key, value.replace("TOKEN", token)]),
          );
          let answer: Answer;
          try {
            answer = await request(method, path, sent);
          } catch (error) {
            if ((error as NodeJS.ErrnoException).code === "ERR_UNESCAPED_CHARACTERS") return;
            throw error;
          }
          const where = `${method} ${path} ${JSON.stringify(headers)} → ${answer.status}`;
          expect(answer.status, where).to.not.equal(500);
          for (const secret of secrets) expect(answer.body.includes(secret), where).to.equal(false);
          expect(answer.body.toString(), where).to.not.equal("(an event stream was opened)");
          if (answer.status !== 200 || method === "HEAD") return;
          // What may be 200: the page, a nonce, an empty list.
          const text = answer.body.toString("utf8");
          if (path === "/") return;
          if (path.startsWith("/auth/nonce")) return void expect(text, where).to.match(/^\{"nonce":/);
          expect(text, where).to.equal("[]");
        },
      ),
      { numRuns: runs(400) },
    );
  });
});
