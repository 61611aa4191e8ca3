/**
 * Deploys the statetrail registries (and, on the local chain, a private ENS) and records them in
 * deployments/<network>/deployment.json with the ABIs beside it.
 *
 *   npm run deploy -- --network localhost   # a running `hardhat node` / `statetrail node` (STATETRAIL_RPC_URL)
 *   npm run deploy -- --network sepolia     # needs SEPOLIA_PRIVATE_KEY (env or `npx hardhat vars set`)
 *   npm run deploy -- --network hardhat     # the in-process chain (gone when the script ends; a smoke test)
 *
 * STATETRAIL_DEPLOYMENTS_DIR overrides where the record is written.
 */
import hre from "hardhat";
import { HDNodeWallet, type Signer } from "ethers";
import type { HttpNetworkAccountsConfig, HttpNetworkConfig } from "hardhat/types";
import { toStatetrailError } from "../src/errors";
import { deployAll, formatDeployment } from "../src/chain/deploy";
import { DEPLOYMENTS_DIR } from "../src/chain/deployments";
import { assertKeyAllowed, requireKey, walletFromPrivateKey } from "../src/chain/keys";
import { connect } from "../src/chain/provider";

async function signerFor(): Promise<Signer> {
  const { name, config } = hre.network;
  if (name === "hardhat") {
    const [signer] = await hre.ethers.getSigners();
    return signer;
  }
  const http = config as HttpNetworkConfig;
  const accounts: HttpNetworkAccountsConfig = http.accounts;
  const expectedChainId = http.chainId;
  // Keys are checked before the RPC endpoint is touched: a missing or public key fails with nothing sent.
  if (Array.isArray(accounts)) {
    const key = requireKey(name, accounts[0]);
    const wallet = walletFromPrivateKey(key);
    if (expectedChainId !== undefined) assertKeyAllowed(wallet.address, expectedChainId);
    const provider = await connect({ rpcUrl: http.url, expectedChainId });
    return wallet.connect(provider);
  }
  const provider = await connect({ rpcUrl: http.url, expectedChainId });
  if (accounts === "remote") {
    const signer = await provider.getSigner(0);
    assertKeyAllowed(await signer.getAddress(), Number((await provider.getNetwork()).chainId));
    return signer;
  }
  const wallet = HDNodeWallet.fromPhrase(
    accounts.mnemonic,
    accounts.passphrase,
    `${accounts.path}/${accounts.initialIndex}`,
  );
  assertKeyAllowed(wallet.address, Number((await provider.getNetwork()).chainId));
  return wallet.connect(provider);
}

async function main(): Promise<void> {
  const network = hre.network.name;
  const signer = await signerFor();
  const { deployment, file } = await deployAll(signer, network, {
    dir: process.env.STATETRAIL_DEPLOYMENTS_DIR || DEPLOYMENTS_DIR,
    confirmations: network === "sepolia" ? 2 : 1,
    // The canonical CREATE2 addresses of deployments/canonical.json: idempotent, the same on every chain.
    canonical: true,
    log: (line) => console.log(line),
  });
  console.log("");
  console.log(formatDeployment(deployment));
  console.log(`\nrecord: ${file}`);
  if (network === "hardhat")
    console.log("(the in-process hardhat chain ends with this script: use --network localhost to keep it)");
}

main().catch((error: unknown) => {
  const e = toStatetrailError(error);
  console.error(`error [${e.code}]: ${e.message}`);
  if (e.hint) console.error(`hint: ${e.hint}`);
  process.exitCode = 1;
});
