import http from "node:http";
import { type AddressInfo } from "node:net";
import { expect } from "chai";
import { runCli } from "../helpers/cli-run";
import { runRefundRequest, setupIssuer, trustFlags, type TestIssuer } from "../helpers/issuer";
import { useHardhatNode } from "../helpers/node-process";

/** A JSON-RPC call as the endpoint received it: its method and, for eth_call, the 4-byte selector. */
type Call = string;

/** An HTTP JSON-RPC forwarder that records the calls of each request it forwards (one request: one round trip). */
async function recordingProxy(target: string): Promise<{ url: string; requests: Call[][]; close(): Promise<void> }> {
  const requests: Call[][] = [];
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      const body = Buffer.concat(chunks);
      const parsed = JSON.parse(body.toString()) as unknown;
      const payloads = (Array.isArray(parsed) ? parsed : [parsed]) as Array<{
        method: string;
        params?: Array<{ data?: string }>;
      }>;
      requests.push(
        payloads.map((call) =>
          call.method === "eth_call" ? `eth_call ${(call.params?.[0]?.data ?? "").slice(0, 10)}` : call.method,
        ),
      );
      const upstream = http.request(target, { method: "POST", headers: { "content-type": "application/json" } });
      upstream.on("response", (answer) => {
        response.writeHead(answer.statusCode ?? 502, { "content-type": "application/json" });
        answer.pipe(response);
      });
      upstream.on("error", () => response.destroy());
      upstream.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const ADDR = "eth_call 0x3b3b57de"; // addr(bytes32)
const TEXT = "eth_call 0x59d1d43c"; // text(bytes32,string)
const MODEL_REGISTRY = "eth_call 0x2ba36f78"; // InstanceRegistry.modelRegistry()

/**
 * A verification mostly waits on the RPC endpoint: on a remote one (tens to hundreds of milliseconds away), every
 * round trip counts. The verifier's reads that do not depend on each other travel together, in one JSON-RPC batch.
 * What goes together is decided by the code (reads asked for in the same turn of the event loop), not by timing.
 */
describe("the verifier's RPC round trips", function () {
  this.timeout(300_000);
  const chain = useHardhatNode();
  let issuer: TestIssuer;
  let url: string;

  before(async function () {
    issuer = await setupIssuer(chain.url, { label: "rounds" });
    const protocol = await runRefundRequest(issuer);
    url = `${issuer.identity.record.url}/instances/${protocol.instance_hash}/protocol`;
  });
  after(async function () {
    await issuer?.close();
  });

  it("asks for independent reads together and for each code once", async function () {
    const proxy = await recordingProxy(chain.url);
    try {
      const result = await runCli(["--rpc", proxy.url, "--json", "verify", url, ...trustFlags(issuer)]);
      const report = (JSON.parse(result.stdout) as { reports: Array<{ verdict: string }> }).reports[0];
      expect(report.verdict, result.stderr).to.equal("valid");

      const calls = proxy.requests.flat();
      // The three registries' code, each read once (V0 hashed a second copy of each before).
      expect(calls.filter((call) => call === "eth_getCode")).to.have.length(3);
      const batchOf = (call: Call): Call[] => proxy.requests.find((request) => request.includes(call))!;
      // V0: the registries' code and the InstanceRegistry's link to the ModelRegistry, in one round trip.
      expect(batchOf("eth_getCode").filter((call) => call === "eth_getCode")).to.have.length(3);
      expect(batchOf("eth_getCode")).to.include(MODEL_REGISTRY);
      // V2: the name's forward address and url record together, asked for while V0's reads are (steps at once).
      expect(batchOf(ADDR)).to.include(TEXT);
      // Round trips: at most two thirds of the calls (one a call, before; 7 for 23 calls here). Not tighter: the
      // entries' block times go out as their state documents are asked for, which the server's answers pace, so in
      // the worst case each is a request of its own.
      expect(proxy.requests.length, JSON.stringify(proxy.requests)).to.be.at.most((calls.length * 2) / 3);
    } finally {
      await proxy.close();
    }
  });
});
