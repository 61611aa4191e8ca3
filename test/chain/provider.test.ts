import http from "node:http";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { expect } from "chai";
import { EnsPlugin, makeError } from "ethers";
import { isStatetrailError, type ErrorCode } from "../../src/errors";
import {
  CANONICAL_ENS_REGISTRY,
  connect,
  ensRegistryOf,
  probeChainId,
  redactUrl,
  toChainError,
} from "../../src/chain/provider";
import { freePort } from "../../src/chain/node";

async function expectCode(promise: Promise<unknown>, code: ErrorCode): Promise<Error & { hint?: string }> {
  try {
    await promise;
  } catch (error) {
    expect(isStatetrailError(error), String(error)).to.equal(true);
    expect((error as { code: string }).code, (error as Error).message).to.equal(code);
    return error as Error & { hint?: string };
  }
  expect.fail(`expected ${code}`);
}

/** A minimal JSON-RPC endpoint that answers eth_chainId and counts requests. */
class FakeRpc {
  readonly methods: string[] = [];
  private server!: http.Server;
  url = "";

  constructor(private readonly chainId: number) {}

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        const parsed = JSON.parse(body);
        const answer = (p: { id: number; method: string }) => {
          this.methods.push(p.method);
          return p.method === "eth_chainId"
            ? { jsonrpc: "2.0", id: p.id, result: "0x" + this.chainId.toString(16) }
            : { jsonrpc: "2.0", id: p.id, error: { code: -32601, message: "not here" } };
        };
        res.setHeader("content-type", "application/json");
        res.end(JSON.stringify(Array.isArray(parsed) ? parsed.map(answer) : answer(parsed)));
      });
    });
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

describe("chain: provider", function () {
  const servers: { stop(): Promise<void> }[] = [];
  afterEach(async function () {
    await Promise.all(servers.splice(0).map((s) => s.stop()));
  });

  async function fake(chainId: number): Promise<FakeRpc> {
    const server = await new FakeRpc(chainId).start();
    servers.push(server);
    return server;
  }

  it("fails fast with RPC_UNREACHABLE on a closed port", async function () {
    const port = await freePort();
    // The refusal itself, not a time-out after it (which says "no answer within").
    const error = await expectCode(connect({ rpcUrl: `http://127.0.0.1:${port}` }), "RPC_UNREACHABLE");
    expect(error.message).to.contain("connection refused").and.not.contain("no answer within");
    expect(error.hint).to.contain("statetrail node");
  });

  it("gives up on an endpoint that never answers after the timeout", async function () {
    const sockets: net.Socket[] = [];
    const silent = net.createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    servers.push({
      stop: async () => {
        sockets.forEach((s) => s.destroy());
        await new Promise((resolve) => silent.close(resolve));
      },
    });
    const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    // The message names the deadline that fired: the one asked for.
    const error = await expectCode(connect({ rpcUrl: url, timeoutMs: 300 }), "RPC_UNREACHABLE");
    expect(error.message).to.contain("no answer within 300 ms");
  });

  it("refuses an endpoint that is not JSON-RPC", async function () {
    const server = http.createServer((_req, res) => res.end("<html>hello</html>"));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    servers.push({ stop: () => new Promise((resolve) => server.close(() => resolve())) });
    await expectCode(probeChainId(`http://127.0.0.1:${(server.address() as AddressInfo).port}`), "RPC_UNREACHABLE");
  });

  it("refuses the wrong chain with WRONG_CHAIN", async function () {
    const rpc = await fake(31337);
    const error = await expectCode(connect({ rpcUrl: rpc.url, expectedChainId: 11155111 }), "WRONG_CHAIN");
    expect(error.message).to.contain("31337").and.contain("11155111").and.contain("sepolia");
  });

  it("returns a provider with a static network that does not poll", async function () {
    const rpc = await fake(31337);
    const provider = await connect({ rpcUrl: rpc.url, expectedChainId: 31337 });
    try {
      const network = await provider.getNetwork();
      expect(network.chainId).to.equal(31337n);
      expect(await ensRegistryOf(provider)).to.equal(null);
      await new Promise((resolve) => setTimeout(resolve, 400));
      await provider.getNetwork();
      expect(rpc.methods).to.deep.equal(["eth_chainId"]);
    } finally {
      provider.destroy();
    }
  });

  it("attaches an EnsPlugin: the given registry, or the canonical one on Sepolia", async function () {
    const local = await fake(31337);
    const registry = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
    const p1 = await connect({ rpcUrl: local.url, ensRegistry: registry });
    const plugin = (await p1.getNetwork()).getPlugin<EnsPlugin>("org.ethers.plugins.network.Ens");
    expect(plugin?.address).to.equal(registry);
    expect(plugin?.targetNetwork).to.equal(31337);
    p1.destroy();

    const sepolia = await fake(11155111);
    const p2 = await connect({ rpcUrl: sepolia.url, expectedChainId: 11155111 });
    expect(await ensRegistryOf(p2)).to.equal(CANONICAL_ENS_REGISTRY);
    expect((await p2.getNetwork()).name).to.equal("sepolia");
    p2.destroy();
    const p3 = await connect({ rpcUrl: sepolia.url, ensRegistry: null });
    expect(await ensRegistryOf(p3)).to.equal(null);
    p3.destroy();
  });

  it("rejects URLs that are not http(s) and keeps secrets out of messages", async function () {
    await expectCode(connect({ rpcUrl: "ws://127.0.0.1:8545" }), "INVALID_ARGUMENT");
    await expectCode(connect({ rpcUrl: "not a url" }), "INVALID_ARGUMENT");
    expect(redactUrl("https://sepolia.infura.io/v3/0123456789abcdef")).to.equal("https://sepolia.infura.io/…");
    expect(redactUrl("http://user:secret@127.0.0.1:8545/")).to.equal("http://127.0.0.1:8545");
    const port = await freePort();
    const error = await expectCode(probeChainId(`http://127.0.0.1:${port}/v3/SECRETKEY?key=SECRET`), "RPC_UNREACHABLE");
    expect(error.message).not.to.contain("SECRET");
  });

  it("maps ethers errors onto statetrail codes", function () {
    const funds = makeError("insufficient funds", "INSUFFICIENT_FUNDS", { transaction: {} });
    expect(toChainError(funds, "deploying").code).to.equal("INSUFFICIENT_FUNDS");
    const network = makeError("network down", "NETWORK_ERROR", { event: "x" });
    expect(toChainError(network, "deploying").code).to.equal("RPC_UNREACHABLE");
    const revert = makeError("reverted", "CALL_EXCEPTION", {
      action: "call",
      data: "0x",
      reason: null,
      transaction: { to: null, data: "0x" },
      invocation: null,
      revert: null,
    });
    expect(toChainError(revert, "registering").code).to.equal("TX_FAILED");
    expect(toChainError(new Error("odd"), "x", "ENS_FAILED").code).to.equal("ENS_FAILED");
  });
});
