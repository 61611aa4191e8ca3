import fs from "node:fs";
import { type Wallet } from "ethers";
import { connect, redactUrl, type ChainProvider } from "../chain/provider";
import { loadDeployment, type Deployment } from "../chain/deployments";
import { verifyRegistryCode } from "../chain/contracts";
import { assertKeyAllowed } from "../chain/keys";
import { loadKeystore } from "../identity/keystore";
import { readIdentity, type IdentityRecord } from "../identity/record";
import { type Registries } from "../protocol/schema";
import { Home, writeAtomic } from "../store/home";
import { identityFile } from "../identity/record";
import { StatetrailError } from "../errors";
import { type TrackerOptions } from "../tracker/tracker";
import { type Output } from "./output";
import { nodeRpcFile, rpcEndpointFor, rpcUrlFor } from "./rpc-endpoint";

// The RPC endpoint's choice lives in ./rpc-endpoint (verify and watch load it without this module's imports).
export { nodeRpcFile, rpcEndpointFor, rpcUrlFor } from "./rpc-endpoint";

export interface GlobalOptions {
  home?: string;
  network: string;
  rpc?: string;
  json: boolean;
  quiet: boolean;
  output: Output;
}

/**
 * The error as the auditor's commands (verify, watch) should say it. Chain code (chain/provider.ts) writes its
 * hints for whoever runs a chain ("start a local chain with statetrail node"); an auditor reads a chain through an
 * RPC endpoint it chose and trusts, so the way out of an unreachable endpoint, another chain or a missing
 * deployment is the endpoint or the trusted registries, named here once for every auditor command.
 */
export function forAuditor(error: StatetrailError, globals: Pick<GlobalOptions, "network" | "rpc">): StatetrailError {
  const hint = auditorHint(error, globals);
  return hint === null ? error : new StatetrailError(error.code, error.message, { hint, cause: error.cause ?? error });
}

function auditorHint(error: StatetrailError, globals: Pick<GlobalOptions, "network" | "rpc">): string | null {
  const rpc = rpcEndpointFor(globals);
  const where = `the RPC endpoint ${redactUrl(rpc.url)} (from ${rpc.from})`;
  const choose =
    "give the RPC URL of a node of that chain you trust with --rpc <url> (or $STATETRAIL_RPC_URL" +
    (globals.network === "sepolia" ? ", $SEPOLIA_RPC_URL" : "") +
    ")";
  switch (error.code) {
    case "RPC_UNREACHABLE":
      return `check ${where}: is it up and reachable from here? Or ${choose}. Nothing was checked: the issuer's data is not in question`;
    case "WRONG_CHAIN":
      return `${where} serves another chain than network ${globals.network}'s: ${choose}, or choose the --network it serves`;
    case "DEPLOYMENT_MISSING":
      return `choose a --network whose registries your clone records in deployments/ (e.g. sepolia), or give them: --registries <model,certificate,instance> --chain-id <id>`;
    default:
      return null;
  }
}

/**
 * Issue 15: `statetrail node --port 8546` records its endpoint, so later commands need no --rpc; it removes the
 * record when it stops (clearNodeRpc).
 */
export function recordNodeRpc(network: string, url: string): void {
  writeAtomic(nodeRpcFile(network), Buffer.from(JSON.stringify({ rpc_url: url, pid: process.pid }, null, 2) + "\n"));
}

export function clearNodeRpc(network: string): void {
  fs.rmSync(nodeRpcFile(network), { force: true });
}

export function homeOf(globals: Pick<GlobalOptions, "home">): Home {
  return new Home(globals.home).ensure();
}

export interface ChainContext {
  deployment: Deployment;
  provider: ChainProvider;
  registries: Registries;
}

/**
 * The network's recorded deployment, a provider checked to serve its chain, the data directory checked to belong
 * to that chain (assertHomeChain), and the registries' code checked.
 */
export async function openChain(globals: GlobalOptions): Promise<ChainContext> {
  const deployment = loadDeployment(globals.network);
  const provider = await connect({
    rpcUrl: rpcUrlFor(globals),
    expectedChainId: deployment.chainId,
    ensRegistry: deployment.ens.registry,
  });
  try {
    await assertHomeChain(homeOf(globals), provider, globals, {
      registriesMissing: async () => {
        try {
          await verifyRegistryCode(provider, deployment);
          return false;
        } catch {
          return true;
        }
      },
    });
    await verifyRegistryCode(provider, deployment);
  } catch (error) {
    provider.destroy();
    if (error instanceof StatetrailError && error.code === "DEPLOYMENT_MISSING" && globals.network === "localhost") {
      throw new StatetrailError("DEPLOYMENT_MISSING", error.message, {
        hint: "the local chain was restarted since the deployment; run `statetrail node` (it redeploys)",
        cause: error,
      });
    }
    throw error;
  }
  return { deployment, provider, registries: registriesOf(deployment) };
}

/** `statetrail` with the global options that name this data directory, network and RPC endpoint again. */
export function commandPrefix(globals: Pick<GlobalOptions, "home" | "network" | "rpc">): string {
  const parts = ["statetrail"];
  if (globals.home !== undefined) parts.push("--home", shellQuote(globals.home));
  if (globals.network !== "localhost") parts.push("--network", shellQuote(globals.network));
  if (globals.rpc !== undefined) parts.push("--rpc", shellQuote(globals.rpc));
  return parts.join(" ");
}

function shellQuote(value: string): string {
  return /^[\w@%+=:,./~-]+$/.test(value) ? value : `'${value.replace(/'/g, "'\\''")}'`;
}

/**
 * Issue 15: a data directory belongs to the chain it was first used with (chain id and genesis block hash, in
 * `chain.json`): its identity and instances exist there only. A restarted local chain keeps chain id 31337 but has
 * a new genesis block, and everything the directory publishes would then fail verification while looking fine
 * locally. Every issuer command (serve, run, model deploy, identity) checks it through openChain, and refuses with
 * WRONG_CHAIN and one way out: set the directory aside and create the identity again on this chain.
 *
 * A directory made before chain.json existed is recorded on its first use, unless its identity's certificate
 * registration transaction is not on this chain (then it belongs to another one).
 */
export async function assertHomeChain(
  home: Home,
  provider: ChainProvider,
  globals: Pick<GlobalOptions, "home" | "network" | "rpc">,
  options: { registriesMissing?: () => Promise<boolean> } = {},
): Promise<void> {
  const chainId = Number((await provider.getNetwork()).chainId);
  const genesis = (await provider.getBlock(0))?.hash?.toLowerCase();
  if (!genesis) {
    throw new StatetrailError("RPC_UNREACHABLE", `the RPC endpoint ${rpcUrlFor(globals)} did not return block 0`, {
      hint: "check --rpc: it must be a full node of the chain",
    });
  }
  const recorded = home.readChain();
  let was: string | null = null;
  if (recorded === null) {
    const identity = readIdentityLoosely(home);
    const tx = identity?.certificate_registration?.transaction_hash;
    if (identity && identity.chain_id === chainId && tx && (await provider.getTransactionReceipt(tx)) === null) {
      was = `chain ${identity.chain_id}, where its certificate was registered in transaction ${tx}, which this chain does not have`;
    } else {
      home.writeChain({
        statetrail_chain: 1,
        chain_id: chainId,
        genesis_hash: genesis,
        rpc_url: rpcUrlFor(globals),
        recorded_at: new Date().toISOString(),
      });
      return;
    }
  } else if (recorded.chain_id !== chainId || recorded.genesis_hash !== genesis) {
    was = `chain ${recorded.chain_id} with genesis block ${recorded.genesis_hash} (first used through ${recorded.rpc_url} at ${recorded.recorded_at})`;
  }
  if (was === null) return;
  const identity = readIdentityLoosely(home);
  const aside = `${home.root}.chain-${recorded?.chain_id ?? chainId}-${(recorded?.genesis_hash ?? "0xunknown").slice(2, 10)}`;
  const init = identityInitCommand(globals, identity, {});
  const node = (await options.registriesMissing?.())
    ? `${commandPrefix({ ...globals, home: undefined })} node, then `
    : "";
  throw new StatetrailError(
    "WRONG_CHAIN",
    `the data directory ${home.root} belongs to another chain: ${was}; the RPC endpoint ${rpcUrlFor(globals)} ` +
      `serves chain ${chainId} with genesis block ${genesis} (a restarted local chain is a new chain). ` +
      `Its identity and instances can't be verified on this chain.`,
    {
      hint: `keep it aside and start again on this chain: ${node}mv ${shellQuote(home.root)} ${shellQuote(aside)} && ${init}`,
    },
  );
}

/**
 * The `identity init` command line that makes (or with `force`, replaces) this identity: same host, port and ENS
 * name unless `port` says otherwise.
 */
export function identityInitCommand(
  globals: Pick<GlobalOptions, "home" | "network" | "rpc">,
  identity: IdentityRecord | null,
  options: { port?: string | number; force?: boolean },
): string {
  const name = identity?.ens_name ?? null;
  return [
    commandPrefix(globals),
    "identity init",
    ...(options.force ? ["--force"] : []),
    `--host ${identity?.host ?? "localhost"}`,
    `--port ${options.port ?? identity?.port ?? 8443}`,
    ...(name === null ? [] : name.endsWith(".test") ? [`--ens-label ${name.slice(0, -5)}`] : [`--ens-name ${name}`]),
  ].join(" ");
}

/** identity.json's chain, registration and server, or null when there is none or it can't be read. */
export function readIdentityLoosely(home: Home): IdentityRecord | null {
  if (!fs.existsSync(identityFile(home))) return null;
  try {
    return readIdentity(home);
  } catch {
    return null;
  }
}

export function registriesOf(deployment: Deployment): Registries {
  return {
    model: deployment.contracts.ModelRegistry.address,
    certificate: deployment.contracts.CertificateRegistry.address,
    instance: deployment.contracts.InstanceRegistry.address,
  };
}

export interface IssuerContext extends ChainContext {
  home: Home;
  identity: IdentityRecord;
  signer: Wallet;
}

/** Everything an issuer command needs: chain, identity, and the unlocked keystore connected to the chain. */
export async function openIssuer(globals: GlobalOptions): Promise<IssuerContext> {
  const home = homeOf(globals);
  const identity = readIdentity(home);
  const chain = await openChain(globals);
  if (identity.chain_id !== chain.deployment.chainId) {
    throw new StatetrailError(
      "WRONG_CHAIN",
      `the identity in ${home.root} is for chain ${identity.chain_id}, the network "${globals.network}" is chain ${chain.deployment.chainId}`,
      { hint: "use --network of the identity, or another --home" },
    );
  }
  const wallet = (await loadKeystore(home)).connect(chain.provider);
  assertKeyAllowed(wallet.address, chain.deployment.chainId);
  return { ...chain, home, identity, signer: wallet };
}

/** The issuer's part of a Tracker's options: data directory, key, identity, registries and chain. */
export function issuerTrackerOptions(
  issuer: IssuerContext,
): Pick<TrackerOptions, "home" | "signer" | "identity" | "registries" | "chainId"> {
  return {
    home: issuer.home,
    signer: issuer.signer,
    identity: issuer.identity,
    registries: issuer.registries,
    chainId: issuer.deployment.chainId,
  };
}
