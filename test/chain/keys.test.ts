import { expect } from "chai";
import { JsonRpcProvider, Network, Wallet, encryptKeystoreJson, type KeystoreAccount } from "ethers";
import { isStatetrailError, type ErrorCode } from "../../src/errors";
import {
  DEV_ACCOUNT_COUNT,
  assertKeyAllowed,
  devAddresses,
  devPrivateKey,
  isDevAccount,
  keyFromEnvironment,
  keyVariable,
  requireKey,
  signerFromKeystore,
  signerFromPrivateKey,
  walletFromPrivateKey,
} from "../../src/chain/keys";

function expectSyncCode(fn: () => unknown, code: ErrorCode): Error & { hint?: string } {
  try {
    fn();
  } catch (error) {
    expect(isStatetrailError(error, code), String(error)).to.equal(true);
    return error as Error & { hint?: string };
  }
  expect.fail(`expected ${code}`);
}

async function expectCode(promise: Promise<unknown>, code: ErrorCode): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    expect(isStatetrailError(error, code), String(error)).to.equal(true);
    return error as Error;
  }
  expect.fail(`expected ${code}`);
}

/** A provider for `chainId` that never needs to reach its URL (static network). */
function offlineProvider(chainId: number): JsonRpcProvider {
  const network = new Network(`chain-${chainId}`, chainId);
  return new JsonRpcProvider("http://127.0.0.1:9", network, { staticNetwork: network });
}

async function keystoreOf(privateKey: string, password: string): Promise<string> {
  const wallet = new Wallet(privateKey);
  const account: KeystoreAccount = { address: wallet.address, privateKey };
  return encryptKeystoreJson(account, password, { scrypt: { N: 1 << 10 } });
}

describe("chain: keys", function () {
  const sepolia = offlineProvider(11155111);
  const local = offlineProvider(31337);
  after(function () {
    sepolia.destroy();
    local.destroy();
  });

  it("derives the 20 well-known Hardhat/Anvil development accounts", function () {
    const addresses = devAddresses();
    expect(addresses).to.have.length(DEV_ACCOUNT_COUNT);
    expect(addresses[0]).to.equal("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
    expect(addresses[1]).to.equal("0x70997970C51812dc3A010C7d01b50e0d17dc79C8");
    expect(addresses[19]).to.equal("0x8626f6940E2eb28930eFb4CeF49B2d1F2C9C1199");
    expect(devPrivateKey(0)).to.equal("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80");
    expect(isDevAccount(addresses[7].toLowerCase())).to.equal(true);
    expect(isDevAccount(Wallet.createRandom().address)).to.equal(false);
  });

  it("refuses a development key on chain 11155111 and accepts it on 31337", async function () {
    const error = expectSyncCode(() => assertKeyAllowed(devAddresses()[0], 11155111), "KEY_REFUSED");
    expect(error.message).to.contain("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266").and.contain("sepolia");
    expect(() => assertKeyAllowed(devAddresses()[0], 31337)).not.to.throw();
    expectSyncCode(() => assertKeyAllowed(devAddresses()[19], 1), "KEY_REFUSED");

    await expectCode(signerFromPrivateKey(devPrivateKey(3), sepolia), "KEY_REFUSED");
    const accepted = await signerFromPrivateKey(devPrivateKey(3), local);
    expect(accepted.address).to.equal(devAddresses()[3]);
    const fresh = Wallet.createRandom();
    expect((await signerFromPrivateKey(fresh.privateKey.slice(2), sepolia)).address).to.equal(fresh.address);
  });

  it("explains how to set SEPOLIA_PRIVATE_KEY when no key is configured", function () {
    for (const missing of [undefined, "", "   "]) {
      const error = expectSyncCode(() => requireKey("sepolia", missing), "KEY_MISSING");
      expect(error.message).to.contain('"sepolia"');
      expect(error.hint).to.contain("export SEPOLIA_PRIVATE_KEY=");
      expect(error.hint).to.contain("npx hardhat vars set SEPOLIA_PRIVATE_KEY");
    }
    expect(requireKey("sepolia", " 0xabc ")).to.equal("0xabc");
    expect(keyVariable("base-sepolia")).to.equal("BASE_SEPOLIA_PRIVATE_KEY");
    expect(keyFromEnvironment("sepolia", { SEPOLIA_PRIVATE_KEY: "0x01" })).to.equal("0x01");
    expect(keyFromEnvironment("sepolia", { SEPOLIA_PRIVATE_KEY: "" })).to.equal(undefined);
  });

  it("rejects malformed private keys without echoing them", function () {
    const bad = "0x" + "z".repeat(64);
    const error = expectSyncCode(() => walletFromPrivateKey(bad), "INVALID_ARGUMENT");
    expect(error.message).not.to.contain("zzzz");
    expectSyncCode(() => walletFromPrivateKey("0x" + "00".repeat(32)), "INVALID_ARGUMENT");
  });

  it("opens keystores, refusing a wrong password and development keys off the local chain", async function () {
    const fresh = Wallet.createRandom();
    const json = await keystoreOf(fresh.privateKey, "correct horse");
    const signer = await signerFromKeystore(json, "correct horse", sepolia);
    expect(signer.address).to.equal(fresh.address);
    expect(signer.provider).to.equal(sepolia);
    await expectCode(signerFromKeystore(json, "wrong", sepolia), "KEYSTORE_PASSWORD");

    const devJson = await keystoreOf(devPrivateKey(0), "pw");
    await expectCode(signerFromKeystore(devJson, "pw", sepolia), "KEY_REFUSED");
    expect((await signerFromKeystore(devJson, "pw", local)).address).to.equal(devAddresses()[0]);
  });
});
