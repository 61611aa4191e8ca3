import { Wallet, parseEther, type Provider } from "ethers";
import { verifyRegistryCode } from "./contracts";
import { deployAll } from "./deploy";
import { loadDeployment, DEPLOYMENTS_DIR, type Deployment } from "./deployments";
import { devPrivateKey, LOCAL_CHAIN_ID } from "./keys";
import { findRunningNode, startNode, type LocalNode } from "./node";
import { connect, type ChainProvider } from "./provider";

export interface LocalChain {
  node: LocalNode;
  provider: ChainProvider;
  deployment: Deployment;
  /** Whether this call started the node (false: a running one was reused). */
  started: boolean;
  /** Whether this call deployed the registries (false: the recorded deployment was still there). */
  deployed: boolean;
}

/**
 * A local chain with the registries and ENS deployed: reuses a node already answering at the port and
 * its recorded deployment when the code is still there, else starts a `hardhat node` and deploys.
 */
export async function ensureLocalChain(
  options: { port?: number; network?: string; dir?: string; log?: (message: string) => void } = {},
): Promise<LocalChain> {
  const port = options.port ?? 8545;
  const network = options.network ?? "localhost";
  const log = options.log ?? (() => undefined);
  const url = `http://127.0.0.1:${port}`;
  let node = await findRunningNode(url);
  const started = node === null;
  if (node) log(`reusing the chain at ${url}`);
  else {
    log(`starting a hardhat node at ${url}`);
    node = await startNode({ port });
  }
  const provider = await connect({ rpcUrl: node.url, expectedChainId: LOCAL_CHAIN_ID, ensRegistry: null });
  let deployment: Deployment | null = null;
  try {
    deployment = loadDeployment(network, options.dir ?? DEPLOYMENTS_DIR);
    await verifyRegistryCode(provider, deployment);
  } catch {
    deployment = null;
  }
  let deployed = false;
  if (!deployment) {
    log("deploying registries and ENS");
    const deployer = new Wallet(devPrivateKey(0), provider);
    deployment = (await deployAll(deployer, network, { dir: options.dir, log, canonical: true })).deployment;
    deployed = true;
  }
  const ensProvider = await connect({
    rpcUrl: node.url,
    expectedChainId: LOCAL_CHAIN_ID,
    ensRegistry: deployment.ens.registry,
  });
  provider.destroy();
  return { node, provider: ensProvider, deployment, started, deployed };
}

/** Local chain only: sends ETH from a development account so a fresh issuer can pay for gas. */
export async function fundFromDevAccount(provider: Provider, address: string, amount = "100"): Promise<string | null> {
  const network = await provider.getNetwork();
  if (Number(network.chainId) !== LOCAL_CHAIN_ID) return null;
  if ((await provider.getBalance(address)) >= parseEther("1")) return null;
  const faucet = new Wallet(devPrivateKey(0), provider);
  const tx = await faucet.sendTransaction({ to: address, value: parseEther(amount) });
  await tx.wait();
  return tx.hash;
}
