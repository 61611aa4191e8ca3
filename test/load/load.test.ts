import { expect } from "chai";
import { renderTable, runLoadTest } from "../../scripts/load-test";

/**
 * A bounded version of scripts/load-test.ts: protocol requests from 16 keep-alive connections and 200 SSE
 * subscribers while a run is tracked. Asserts correctness only (no errors, every subscriber got every state
 * once and the final status, memory back near where it was), not timing: the figures go to LOADTEST.md from the
 * script.
 */
describe("load: protocol requests and 200 SSE subscribers while a run is tracked", function () {
  this.timeout(120_000);

  it("no errors, all 200 subscribers got every event exactly once", async function () {
    const result = await runLoadTest({ seconds: 3, connections: 16, subscribers: 200, requests: 3_000 });
    if (process.env.STATETRAIL_LOAD_VERBOSE) console.log(renderTable(result));
    expect(result.problems).to.deep.equal([]);
    expect(result.http.errors).to.equal(0);
    expect(result.http.requests).to.be.greaterThan(0);
    expect(result.sse.opened).to.equal(200);
    expect(result.sse.complete).to.equal(200);
    expect(result.sse.duplicates).to.equal(0);
    expect(result.sse.events_delivered).to.equal(200 * result.tracked_run.states);
    expect(result.tracked_run.status).to.equal("succeeded");
    // Bounded memory: after a full collection the heap is back where it was (nothing kept per request or
    // subscriber); RSS may keep some of what the allocator got during the load.
    expect(result.heap_used_mb.after - result.heap_used_mb.before).to.be.lessThan(64);
    expect(result.rss_mb.after - result.rss_mb.before).to.be.lessThan(300);
  });

  it("private data: every request and subscriber signed in and granted, none refused; without the token 401, no data", async function () {
    const result = await runLoadTest({ seconds: 3, connections: 16, subscribers: 200, requests: 3_000, auth: true });
    if (process.env.STATETRAIL_LOAD_VERBOSE) console.log(renderTable(result));
    expect(result.problems).to.deep.equal([]);
    expect(result.options.auth).to.equal(true);
    expect(result.unauthenticated).to.deep.include({ status: 401, data_leaked: false });
    expect(result.http.errors).to.equal(0);
    expect(Object.keys(result.http.statuses)).to.deep.equal(["200"]);
    expect(result.sse.complete).to.equal(200);
    expect(result.sse.events_delivered).to.equal(200 * result.tracked_run.states);
  });
});
