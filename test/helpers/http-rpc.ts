import http from "node:http";
import { type AddressInfo } from "node:net";
import { network } from "hardhat";

export interface HttpRpcBridge {
  /** `http://127.0.0.1:<port>`: any path and query under it answers JSON-RPC. */
  base: string;
  /** The request paths (with query) seen, in order. */
  paths: string[];
  close(): Promise<void>;
}

/**
 * A JSON-RPC endpoint over HTTP at any path, answered by Hardhat's in-process chain: what a keyed provider URL
 * (`/v3/<key>?apikey=…`) looks like to the verifier, without a network.
 */
export async function startHttpRpcBridge(): Promise<HttpRpcBridge> {
  const paths: string[] = [];
  type Call = { id: number; method: string; params?: unknown[] };
  const answer = async (call: Call): Promise<unknown> => {
    try {
      const result = await network.provider.request({ method: call.method, params: call.params ?? [] });
      return { jsonrpc: "2.0", id: call.id, result };
    } catch (error) {
      return { jsonrpc: "2.0", id: call.id, error: { code: -32000, message: (error as Error).message } };
    }
  };
  const server = http.createServer((request, response) => {
    paths.push(request.url ?? "");
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      void (async () => {
        const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Call | Call[];
        const out = Array.isArray(body) ? await Promise.all(body.map(answer)) : await answer(body);
        response.setHeader("content-type", "application/json");
        response.end(JSON.stringify(out));
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    base: `http://127.0.0.1:${port}`,
    paths,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
