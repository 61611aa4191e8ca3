import { freePort, startNode, type LocalNode, type StartNodeOptions } from "../../src/chain/node";

export interface NodeHandle {
  /** The node's JSON-RPC URL (available from the first `before` hook on). */
  readonly url: string;
  readonly node: LocalNode;
}

/**
 * Starts a real `hardhat node` child process on a free loopback port before the tests of the enclosing
 * `describe` and stops it (process group) after them. Call it inside `describe`.
 */
export function useHardhatNode(options: Omit<StartNodeOptions, "port" | "hostname"> = {}): NodeHandle {
  let node: LocalNode | undefined;
  before(async function () {
    this.timeout(options.timeoutMs ?? 60_000);
    node = await startNode({ ...options, hostname: "127.0.0.1", port: await freePort() });
  });
  after(async function () {
    this.timeout(15_000);
    await node?.stop();
  });
  return {
    get url(): string {
      if (!node) throw new Error("the hardhat node is not started yet (use it inside a test or hook)");
      return node.url;
    },
    get node(): LocalNode {
      if (!node) throw new Error("the hardhat node is not started yet (use it inside a test or hook)");
      return node;
    },
  };
}
