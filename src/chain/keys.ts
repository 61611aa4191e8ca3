import { HDNodeWallet, Mnemonic, Wallet, getAddress, type Provider } from "ethers";
import { StatetrailError } from "../errors";
import { CHAIN_IDS, chainIdOf, chainName } from "./provider";

/**
 * The mnemonic behind the accounts Hardhat and Anvil hand out by default. Their private keys are public:
 * anything they hold on a real network is taken within seconds.
 */
export const DEV_MNEMONIC = "test test test test test test test test test test test junk";
/** How many accounts of {@link DEV_MNEMONIC} Hardhat and Anvil derive by default. */
export const DEV_ACCOUNT_COUNT = 20;
/** The only chain on which the development accounts are accepted. */
export const LOCAL_CHAIN_ID: number = CHAIN_IDS.local;

let devAccountCache: readonly HDNodeWallet[] | undefined;

/** The development accounts (m/44'/60'/0'/0/i, i < 20), derived once and cached. */
export function devWallets(): readonly HDNodeWallet[] {
  if (!devAccountCache) {
    const parent = HDNodeWallet.fromMnemonic(Mnemonic.fromPhrase(DEV_MNEMONIC), "m/44'/60'/0'/0");
    devAccountCache = Object.freeze(Array.from({ length: DEV_ACCOUNT_COUNT }, (_, i) => parent.deriveChild(i)));
  }
  return devAccountCache;
}

/** Addresses of the development accounts, checksummed. */
export function devAddresses(): readonly string[] {
  return devWallets().map((w) => w.address);
}

/** The private key of development account `index` (for local chains and tests only). */
export function devPrivateKey(index = 0): string {
  const wallet = devWallets()[index];
  if (!wallet)
    throw new StatetrailError("INVALID_ARGUMENT", `there are only ${DEV_ACCOUNT_COUNT} development accounts`);
  return wallet.privateKey;
}

export function isDevAccount(address: string): boolean {
  const checksummed = getAddress(address);
  return devAddresses().includes(checksummed);
}

/** Throws KEY_REFUSED when `address` is a development account and `chainId` is not the local chain (31337). */
export function assertKeyAllowed(address: string, chainId: number): void {
  if (chainId !== LOCAL_CHAIN_ID && isDevAccount(address)) {
    throw new StatetrailError(
      "KEY_REFUSED",
      `refusing to use ${getAddress(address)} on chain ${chainId} (${chainName(chainId)}): it is one of the public Hardhat/Anvil development accounts ("test test … junk"), whose private key everyone knows`,
      { hint: "generate a fresh key for this network (statetrail identity init) and fund it" },
    );
  }
}

/** The environment variable / Hardhat configuration variable that holds the key for `network`. */
export function keyVariable(network: string): string {
  return `${network.toUpperCase().replace(/[^A-Z0-9]+/g, "_")}_PRIVATE_KEY`;
}

/**
 * Returns the configured key, or throws KEY_MISSING saying how to configure one. `key` is what the
 * configuration holds (an empty string or undefined when nothing is set).
 */
export function requireKey(network: string, key: string | undefined | null): string {
  if (key && key.trim() !== "") return key.trim();
  const variable = keyVariable(network);
  throw new StatetrailError("KEY_MISSING", `no private key is configured for network "${network}"`, {
    hint:
      `set ${variable}: either as an environment variable (export ${variable}=0x…) ` +
      `or as a Hardhat configuration variable (npx hardhat vars set ${variable})` +
      (network === "sepolia" ? "; the account needs Sepolia ETH from a faucet" : ""),
  });
}

/** The key for `network` from the environment (`<NETWORK>_PRIVATE_KEY`), or undefined. */
export function keyFromEnvironment(network: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const value = env[keyVariable(network)];
  return value && value.trim() !== "" ? value.trim() : undefined;
}

/** Parses a hex private key (with or without 0x). The key never appears in error messages. */
export function walletFromPrivateKey(privateKey: string, provider?: Provider | null): Wallet {
  const trimmed = privateKey.trim();
  const hex = trimmed.startsWith("0x") || trimmed.startsWith("0X") ? trimmed.slice(2) : trimmed;
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) {
    throw new StatetrailError("INVALID_ARGUMENT", "the private key is not 32 bytes of hex", {
      hint: "a private key is 64 hex characters, optionally prefixed with 0x",
    });
  }
  try {
    return new Wallet("0x" + hex, provider ?? null);
  } catch (error) {
    throw new StatetrailError("INVALID_ARGUMENT", "the private key is not a valid secp256k1 key", { cause: error });
  }
}

/**
 * A signer for `provider` from a private key, refusing development accounts on any chain but 31337.
 * Looks the chain id up from the provider.
 */
export async function signerFromPrivateKey(privateKey: string, provider: Provider): Promise<Wallet> {
  const wallet = walletFromPrivateKey(privateKey, provider);
  assertKeyAllowed(wallet.address, await chainIdOf(provider));
  return wallet;
}

/**
 * A signer from an encrypted JSON keystore (Web3 Secret Storage, as written by `Wallet.encrypt`).
 * Wrong password → KEYSTORE_PASSWORD. Development accounts are refused off the local chain.
 */
export async function signerFromKeystore(keystoreJson: string, password: string, provider: Provider): Promise<Wallet> {
  let wallet: Wallet | HDNodeWallet;
  try {
    wallet = await Wallet.fromEncryptedJson(keystoreJson, password);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    if (/password/i.test(message)) {
      throw new StatetrailError("KEYSTORE_PASSWORD", "the keystore password is wrong", {
        hint: "set STATETRAIL_PASSWORD or type the password you chose at `statetrail identity init`",
        cause: error,
      });
    }
    throw new StatetrailError("INVALID_ARGUMENT", `the keystore could not be read: ${message}`, { cause: error });
  }
  const signer = new Wallet(wallet.privateKey, provider);
  assertKeyAllowed(signer.address, await chainIdOf(provider));
  return signer;
}
