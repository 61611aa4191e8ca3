import { type Wallet } from "ethers";
import { connect, type ChainProvider } from "../chain/provider";
import { loadDeployment, type Deployment } from "../chain/deployments";
import { verifyRegistryCode } from "../chain/contracts";
import { assertKeyAllowed } from "../chain/keys";
import { loadKeystore } from "../identity/keystore";
import { readIdentity, type IdentityRecord } from "../identity/record";
import { type Registries } from "../protocol/schema";
import { Home } from "../store/home";
import { StatetrailError } from "../errors";
import { type Output } from "./output";

export interface GlobalOptions {
  home?: string;
  network: string;
  rpc?: string;
  json: boolean;
  quiet: boolean;
  output: Output;
}

/** The RPC URL for a network: --rpc, then the environment, then the network's default. */
export function rpcUrlFor(globals: Pick<GlobalOptions, "network" | "rpc">): string {
  if (globals.rpc) return globals.rpc;
  if (process.env.STATETRAIL_RPC_URL) return process.env.STATETRAIL_RPC_URL;
  if (globals.network === "sepolia") {
    return process.env.SEPOLIA_RPC_URL ?? "https://ethereum-sepolia-rpc.publicnode.com";
  }
  return "http://127.0.0.1:8545";
}

export function homeOf(globals: Pick<GlobalOptions, "home">): Home {
  return new Home(globals.home).ensure();
}

export interface ChainContext {
  deployment: Deployment;
  provider: ChainProvider;
  registries: Registries;
}

/** The network's recorded deployment, a provider checked to serve its chain, and its registries' code checked. */
export async function openChain(globals: GlobalOptions): Promise<ChainContext> {
  const deployment = loadDeployment(globals.network);
  const provider = await connect({
    rpcUrl: rpcUrlFor(globals),
    expectedChainId: deployment.chainId,
    ensRegistry: deployment.ens.registry,
  });
  try {
    await verifyRegistryCode(provider, deployment);
  } catch (error) {
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
