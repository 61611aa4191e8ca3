import fs from "node:fs";
import path from "node:path";
import { DEPLOYMENTS_DIR } from "../chain/deployments";
import { type GlobalOptions } from "./context";

// Which JSON-RPC endpoint a command uses. Apart from ./context so that `verify` and `watch` choose theirs without
// loading what the issuer's commands need there (keystore, identity record, data directory, registries' code).

/**
 * The RPC URL for a network: --rpc, then the environment, then the endpoint `statetrail node` recorded for it
 * (recordNodeRpc), then the network's default.
 */
export function rpcUrlFor(globals: Pick<GlobalOptions, "network" | "rpc">): string {
  return rpcEndpointFor(globals).url;
}

/** The RPC URL {@link rpcUrlFor} chooses, and where it came from (for messages: "from --rpc"). */
export function rpcEndpointFor(globals: Pick<GlobalOptions, "network" | "rpc">): { url: string; from: string } {
  if (globals.rpc) return { url: globals.rpc, from: "--rpc" };
  if (process.env.STATETRAIL_RPC_URL) return { url: process.env.STATETRAIL_RPC_URL, from: "$STATETRAIL_RPC_URL" };
  if (globals.network === "sepolia") {
    return process.env.SEPOLIA_RPC_URL
      ? { url: process.env.SEPOLIA_RPC_URL, from: "$SEPOLIA_RPC_URL" }
      : { url: "https://ethereum-sepolia-rpc.publicnode.com", from: "the default public Sepolia endpoint" };
  }
  const recorded = recordedNodeRpc(globals.network);
  if (recorded) return { url: recorded, from: `${nodeRpcFile(globals.network)}, recorded by statetrail node` };
  return { url: "http://127.0.0.1:8545", from: `the default for network ${globals.network}` };
}

/** `deployments/<network>/node.json`: the JSON-RPC URL of the local chain `statetrail node` runs for the network. */
export function nodeRpcFile(network: string): string {
  return path.join(process.env.STATETRAIL_DEPLOYMENTS_DIR || DEPLOYMENTS_DIR, network, "node.json");
}

function recordedNodeRpc(network: string): string | null {
  try {
    const record = JSON.parse(fs.readFileSync(nodeRpcFile(network), "utf8")) as { rpc_url?: unknown };
    return typeof record.rpc_url === "string" && /^https?:\/\//.test(record.rpc_url) ? record.rpc_url : null;
  } catch {
    return null;
  }
}
