import { expect } from "chai";
import fs from "node:fs";
import https from "node:https";
import { StatetrailError } from "../../src/errors";
import { PinnedAgent, sseSubscribe, type SseEvent, type SseSubscription } from "../../src/net/pinned-fetch";
import { type ProtocolEntry } from "../../src/protocol/schema";
import { startServer, type RunningServer } from "../../src/server/https";
import { type EventStreamOptions, type StatusEventData } from "../../src/server/sse";
import { headOf } from "../../src/protocol/pages";
import { makeCertificate, makeHome, resealed, waitFor, type TestCertificate, type TestHome } from "./fixtures";

interface Collected {
  sub: SseSubscription;
  events: SseEvent[];
  errors: { error: StatetrailError; fatal: boolean }[];
  opens: number;
  states(): ProtocolEntry[];
}

describe("server: Server-Sent Events", function () {
  this.timeout(20_000);
  let cert: TestCertificate;
  let fixture: TestHome;
  const servers: RunningServer[] = [];
  const subscriptions: SseSubscription[] = [];

  before(() => {
    cert = makeCertificate();
  });

  beforeEach(() => {
    fixture = makeHome();
    fixture.home.writeProtocol(fixture.protocol(2));
  });

  afterEach(async () => {
    for (const sub of subscriptions.splice(0)) sub.close();
    for (const server of servers.splice(0)) await server.close();
    fixture.cleanup();
  });

  async function start(events: EventStreamOptions = {}, port = 0): Promise<RunningServer> {
    const server = await startServer({
      home: fixture.home,
      host: "127.0.0.1",
      port,
      certPem: cert.certPem,
      keyPem: cert.keyPem,
      events: { debounceMs: 10, ...events },
      log: () => undefined,
    });
    servers.push(server);
    return server;
  }

  function eventsUrl(server: RunningServer): string {
    return `${server.url}/instances/${fixture.instanceHash}/events`;
  }

  function subscribe(
    server: RunningServer,
    options: { lastEventId?: string; reconnectMs?: number | false; fingerprint?: string; idleTimeoutMs?: number } = {},
  ): Collected {
    const events: SseEvent[] = [];
    const errors: Collected["errors"] = [];
    const sub = sseSubscribe(eventsUrl(server), {
      fingerprint: options.fingerprint ?? cert.fingerprint,
      lastEventId: options.lastEventId,
      reconnectMs: options.reconnectMs ?? false,
      idleTimeoutMs: options.idleTimeoutMs,
      onEvent: (event) => events.push(event),
      onError: (error, fatal) => errors.push({ error, fatal }),
      onOpen: () => (collected.opens += 1),
    });
    subscriptions.push(sub);
    const collected: Collected = {
      sub,
      events,
      errors,
      opens: 0,
      states: () => events.filter((e) => e.type === "state").map((e) => JSON.parse(e.data) as ProtocolEntry),
    };
    return collected;
  }

  const seqs = (client: Collected): number[] => client.states().map((entry) => entry.seq);

  it("replays every existing entry on connect, with id = seq", async () => {
    const server = await start();
    const client = subscribe(server);
    const certificate = await client.sub.ready;
    expect(certificate.fingerprint).to.equal(cert.fingerprint);
    await waitFor(() => client.events.length === 2, 3000, "replay");
    expect(client.events.map((e) => [e.type, e.id])).to.deep.equal([
      ["state", "0"],
      ["state", "1"],
    ]);
    expect(client.states()).to.deep.equal(fixture.protocol(2).instance_protocol);
    expect(server.app.events.clientCount).to.equal(1);
  });

  it("resumes after Last-Event-ID", async () => {
    fixture.home.writeProtocol(fixture.protocol(4));
    const server = await start();
    const client = subscribe(server, { lastEventId: "1" });
    await client.sub.ready;
    await waitFor(() => client.events.length === 2, 3000, "resumed events");
    expect(seqs(client)).to.deep.equal([2, 3]);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(seqs(client)).to.deep.equal([2, 3]);
  });

  it("resumes after Last-Event-ID across page boundaries, reading only the pages from there", async () => {
    fixture.home.writeProtocol(fixture.protocol(5, "succeeded", 2)); // pages [0 1] [2 3] [4]
    const server = await start();
    for (const [last, expected] of [
      ["0", [1, 2, 3, 4]],
      ["1", [2, 3, 4]],
      ["2", [3, 4]],
      ["3", [4]],
    ] as const) {
      const client = subscribe(server, { lastEventId: last });
      await waitFor(() => client.events.some((e) => e.type === "status"), 3000, `resumed after ${last}`);
      expect(seqs(client), `after ${last}`).to.deep.equal(expected);
      expect(client.states(), `after ${last}`).to.deep.equal(
        fixture.protocol(5, "succeeded", 2).instance_protocol.slice(Number(last) + 1),
      );
      client.sub.close();
    }
    // Pages before the client's next seq are not read: with pages 0 and 1 gone, a client after seq 3 still resumes.
    fs.rmSync(fixture.home.pageFile(fixture.instanceHash, 0));
    fs.rmSync(fixture.home.pageFile(fixture.instanceHash, 1));
    const late = subscribe(server, { lastEventId: "3" });
    await waitFor(() => late.events.some((e) => e.type === "status"), 3000, "resumed without the early pages");
    expect(seqs(late)).to.deep.equal([4]);
    expect(late.events.map((e) => e.type)).to.deep.equal(["state", "status"]);
  });

  it("streams only the entries the head counts, not lines appended ahead of it", async () => {
    // The tracker appends lines before it signs the head that counts them: a head is what a client may rely on.
    fixture.home.writeProtocol(fixture.protocol(5, "running", 2));
    fixture.home.writeHead(headOf(fixture.protocol(3, "running", 2)));
    const server = await start({ watch: false, pollIntervalMs: 60_000 });
    const client = subscribe(server);
    await waitFor(() => client.events.length === 3, 3000, "replay up to the head");
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(seqs(client)).to.deep.equal([0, 1, 2]);
    server.notify(headOf(fixture.protocol(5, "running", 2)));
    await waitFor(() => client.events.length === 5, 3000, "entries of the next head");
    expect(seqs(client)).to.deep.equal([0, 1, 2, 3, 4]);
  });

  it("sends nothing out of order when the pages don't hold what the head counts", async () => {
    fixture.home.writeProtocol(fixture.protocol(4, "running", 2));
    // Page 1 replaced by page 0's bytes (a broken store): seq 2 is not there, so nothing from it on is sent.
    fs.copyFileSync(fixture.home.pageFile(fixture.instanceHash, 0), fixture.home.pageFile(fixture.instanceHash, 1));
    const server = await start({ watch: false, pollIntervalMs: 60_000 });
    const client = subscribe(server);
    await waitFor(() => client.events.length === 2, 3000, "the entries that are right");
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(seqs(client)).to.deep.equal([0, 1]);
  });

  it("streams a new entry after an in-process notify()", async () => {
    // No file watch and a slow poll: only notify() can deliver within the wait.
    const server = await start({ watch: false, pollIntervalMs: 60_000 });
    const client = subscribe(server);
    await waitFor(() => client.events.length === 2, 3000, "replay");
    // The tracker appends the entry to the pages, then signs and writes the head, then notifies.
    fixture.home.writeProtocol(fixture.protocol(3));
    server.notify(headOf(fixture.protocol(3)));
    await waitFor(() => client.events.length === 3, 2000, "notified entry");
    expect(client.events[2].id).to.equal("2");
    expect(client.states()[2]).to.deep.equal(fixture.protocol(3).instance_protocol[2]);
    // An older or equal protocol sends nothing again.
    server.notify(headOf(fixture.protocol(2)));
    server.notify(headOf(fixture.protocol(3)));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(seqs(client)).to.deep.equal([0, 1, 2]);
  });

  it("streams entries written to protocol.json by another process (fs.watch)", async () => {
    const server = await start({ pollIntervalMs: 60_000 });
    const client = subscribe(server);
    await waitFor(() => client.events.length === 2, 3000, "replay");
    fixture.home.writeProtocol(fixture.protocol(3));
    await waitFor(() => client.events.length === 3, 3000, "watched entry");
    fixture.home.writeProtocol(fixture.protocol(5));
    await waitFor(() => client.events.length === 5, 3000, "watched entries");
    expect(seqs(client)).to.deep.equal([0, 1, 2, 3, 4]);
  });

  it("falls back to polling protocol.json when fs.watch is not used", async () => {
    const server = await start({ watch: false, pollIntervalMs: 50 });
    const client = subscribe(server);
    await waitFor(() => client.events.length === 2, 3000, "replay");
    fixture.home.writeProtocol(fixture.protocol(4));
    await waitFor(() => client.events.length === 4, 3000, "polled entries");
    expect(seqs(client)).to.deep.equal([0, 1, 2, 3]);
  });

  it("sends a status event once the instance terminates, after its last state", async () => {
    const server = await start();
    const client = subscribe(server);
    await waitFor(() => client.events.length === 2, 3000, "replay");
    const final = fixture.protocol(4, "succeeded");
    fixture.home.writeProtocol(final);
    await waitFor(() => client.events.some((e) => e.type === "status"), 3000, "status event");
    expect(client.events.map((e) => e.type)).to.deep.equal(["state", "state", "state", "state", "status"]);
    const status = JSON.parse(client.events[4].data) as StatusEventData;
    expect(status).to.deep.equal({
      instance_hash: fixture.instanceHash,
      status: "succeeded",
      head: final.head,
      terminated: final.terminated,
    });
    server.notify(headOf(final));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(client.events.filter((e) => e.type === "status")).to.have.length(1);

    // A client connecting after termination gets the whole history, then the status.
    const late = subscribe(server);
    await waitFor(() => late.events.length === 5, 3000, "late replay");
    expect(late.events[4].type).to.equal("status");
  });

  it("limits concurrent clients and frees a slot on disconnect", async () => {
    const server = await start({ maxClients: 2 });
    const first = subscribe(server);
    const second = subscribe(server);
    await Promise.all([first.sub.ready, second.sub.ready]);
    await waitFor(() => server.app.events.clientCount === 2, 2000, "two clients");
    const third = subscribe(server);
    const refused = await third.sub.ready.then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refused).to.be.instanceOf(StatetrailError);
    expect((refused as StatetrailError).message).to.match(/503 TOO_MANY_CLIENTS/);
    expect(third.errors).to.have.length(1);

    first.sub.close();
    await waitFor(() => server.app.events.clientCount === 1, 2000, "slot freed");
    const fourth = subscribe(server);
    await fourth.sub.ready;
    await waitFor(() => fourth.events.length === 2, 2000, "replay to the new client");
    expect(server.app.events.clientCount).to.equal(2);
  });

  it("replays a long protocol to a slow reader through backpressure, without dropping it", async () => {
    const template = fixture.protocol(1, "succeeded");
    const count = 3000;
    const long = resealed({
      ...template,
      instance_protocol: Array.from({ length: count }, (_, seq) => ({ ...template.instance_protocol[0], seq })),
      head: { seq: count - 1, state_hash: template.instance_protocol[0].state_hash },
      page_size: 256, // 12 pages: the replay reads them one at a time
    });
    fixture.home.writeProtocol(long);
    // ~1.5 MB of events against a 64 KiB limit of unsent output: only pausing on a full buffer gets it all through.
    const server = await start({ maxBufferedBytes: 64 * 1024 });
    const client = subscribe(server);
    await waitFor(() => client.events.length === count + 1, 10_000, "long replay");
    expect(seqs(client)).to.deep.equal(Array.from({ length: count }, (_, seq) => seq));
    expect(client.events[count].type).to.equal("status");
    expect(server.app.events.clientCount).to.equal(1);
  });

  it("sends heartbeats on idle streams", async () => {
    const server = await start({ heartbeatMs: 50 });
    const text = await new Promise<string>((resolve, reject) => {
      const request = https.request(
        {
          host: "127.0.0.1",
          port: server.port,
          path: `/instances/${fixture.instanceHash}/events`,
          agent: new PinnedAgent({ fingerprint: cert.fingerprint }),
        },
        (response) => {
          expect(response.statusCode).to.equal(200);
          expect(response.headers["content-type"]).to.match(/^text\/event-stream/);
          expect(response.headers["cache-control"]).to.equal("no-store");
          let received = "";
          response.setEncoding("utf8");
          response.on("data", (chunk: string) => (received += chunk));
          setTimeout(() => {
            request.destroy();
            resolve(received);
          }, 300);
        },
      );
      request.on("error", reject);
      request.end();
    });
    expect(text.match(/^: heartbeat$/gm)?.length ?? 0).to.be.at.least(2);
    await waitFor(() => server.app.events.clientCount === 0, 2000, "cleanup after disconnect");
  });

  it("a subscriber reconnects on a silent stream, one connection at a time, resuming where it was", async () => {
    const server = await start({ heartbeatMs: 60_000, retryMs: 20 });
    const client = subscribe(server, { reconnectMs: 20, idleTimeoutMs: 150 });
    await waitFor(() => client.events.length === 2, 3000, "replay");
    await waitFor(() => client.opens >= 4, 3000, "several reconnects");
    // Each give-up is followed by exactly one new connection: never more than one open at the server.
    expect(server.app.events.clientCount).to.be.at.most(1);
    expect(client.opens).to.be.at.most(client.errors.length + 1);
    expect(client.errors.every((e) => !e.fatal && /no data/.test(e.error.message))).to.equal(true);
    expect(seqs(client)).to.deep.equal([0, 1]);
    // Written to the file, so it arrives whether or not the client is between two connections right now.
    fixture.home.writeProtocol(fixture.protocol(3));
    await waitFor(() => client.events.length === 3, 2000, "entry after reconnects");
    expect(seqs(client)).to.deep.equal([0, 1, 2]);
  });

  it("refuses an invalid Last-Event-ID and a wrong certificate pin", async () => {
    const server = await start();
    const invalid = subscribe(server, { lastEventId: "abc" });
    const badId = await invalid.sub.ready.then(
      () => undefined,
      (error: unknown) => error as StatetrailError,
    );
    expect(badId?.message).to.match(/400 INVALID_ARGUMENT/);

    const pinned = subscribe(server, { fingerprint: "ab".repeat(32), reconnectMs: 50 });
    const badPin = await pinned.sub.ready.then(
      () => undefined,
      (error: unknown) => error as StatetrailError,
    );
    expect(badPin?.code).to.equal("TLS_FAILED");
    expect(pinned.errors.map((e) => e.fatal)).to.deep.equal([true]);
    expect(server.app.events.clientCount).to.equal(0);
  });

  it("close() ends the streams; a subscriber reconnects to a new server and resumes without duplicates", async () => {
    const server = await start({ retryMs: 100 });
    const client = subscribe(server, { reconnectMs: 5000 });
    await waitFor(() => client.events.length === 2, 3000, "replay");
    const { port } = server;
    // close() returns at all: a stream it did not end would hold its connection, and close() with it, for good.
    await server.close();
    servers.splice(servers.indexOf(server), 1);
    await waitFor(() => client.errors.length > 0, 2000, "stream end noticed");
    expect(client.errors[0].fatal).to.equal(false);

    fixture.home.writeProtocol(fixture.protocol(4));
    const restarted = await start({ retryMs: 100 }, port);
    // The server's `retry: 100` overrides the client's 5 s default.
    await waitFor(() => client.events.length === 4, 3000, "resumed after restart");
    expect(seqs(client)).to.deep.equal([0, 1, 2, 3]);
    expect(client.sub.lastEventId).to.equal("3");
    expect(restarted.app.events.clientCount).to.equal(1);
  });
});
