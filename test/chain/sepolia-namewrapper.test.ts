/**
 * Wrapped ENS names (issue 13): names registered in the ENS app today are held in the registry by the chain's
 * NameWrapper, and their real owner is NameWrapper.ownerOf(uint256(node)). No npm package ships NameWrapper's
 * bytecode, and statetrail writes no ENS contract (not even a mock), so this cannot run end to end here: these
 * tests check the decision logic: which chains have a NameWrapper (ensjs's chain definitions), when the real
 * owner is read from it, the exact call made (against a JSON-RPC stub that answers eth_call, no contract), and the
 * error a key that does not own the name gets.
 */
import { expect } from "chai";
import {
  AbiCoder,
  Interface,
  Network,
  Wallet,
  ZeroAddress,
  getAddress,
  namehash,
  toBeHex,
  type Provider,
  type TransactionRequest,
} from "ethers";
import { isStatetrailError } from "../../src/errors";
import {
  ensArtifact,
  nameOwnership,
  nameWrapperOf,
  notOwnerError,
  ownerOf,
  type NameOwnership,
} from "../../src/chain/ens";
import { CANONICAL_ENS_REGISTRY } from "../../src/chain/provider";

const SEPOLIA_WRAPPER = "0x0635513f179D50A207757E05759CbD106d7dFcE8";
const MAINNET_WRAPPER = "0xD4416b13d2b3a9aBae7AcD5D6C2BbDBE25686401";
const coder = AbiCoder.defaultAbiCoder();
const registryAbi = new Interface(ensArtifact("ENSRegistry").abi);
const wrapperAbi = new Interface(["function ownerOf(uint256 id) view returns (address owner)"]);

/**
 * A provider that answers eth_call like a chain whose registry says `registryOwner` for every node and whose
 * NameWrapper (if asked) says `wrappedOwner`; it records the calls made.
 */
function stubChain(chainId: number, registryOwner: string, wrappedOwner: string) {
  const calls: { to: string; data: string }[] = [];
  const provider = {
    getNetwork: async () => new Network(`chain-${chainId}`, chainId),
    call: async (tx: TransactionRequest) => {
      const to = getAddress(String(tx.to));
      const data = String(tx.data);
      calls.push({ to, data });
      if (to === getAddress(CANONICAL_ENS_REGISTRY)) {
        expect(registryAbi.parseTransaction({ data })?.name).to.equal("owner");
        return coder.encode(["address"], [registryOwner]);
      }
      if (to === getAddress(SEPOLIA_WRAPPER) || to === getAddress(MAINNET_WRAPPER)) {
        return coder.encode(["address"], [wrappedOwner]);
      }
      throw new Error(`unexpected call to ${to}`);
    },
  };
  return { provider: provider as unknown as Provider, calls };
}

const ens = { registry: CANONICAL_ENS_REGISTRY };

describe("chain: wrapped ENS names (NameWrapper.ownerOf), decision logic without a NameWrapper", function () {
  const me = Wallet.createRandom().address;
  const other = Wallet.createRandom().address;

  it("knows Sepolia's and mainnet's NameWrapper from ensjs's chain definitions, and none on the local chain", function () {
    expect(nameWrapperOf(11155111)).to.equal(SEPOLIA_WRAPPER);
    expect(nameWrapperOf(1)).to.equal(MAINNET_WRAPPER);
    expect(nameWrapperOf(31337)).to.equal(null);
  });

  it("reads the real owner of a wrapped name with NameWrapper.ownerOf(uint256(node))", async function () {
    const { provider, calls } = stubChain(11155111, SEPOLIA_WRAPPER, other);
    const ownership = await nameOwnership(provider, ens, "Acme-Audit.eth");
    expect(ownership).to.deep.equal({
      name: "acme-audit.eth",
      registryOwner: SEPOLIA_WRAPPER,
      wrapper: SEPOLIA_WRAPPER,
      owner: other,
    });
    const toWrapper = calls.filter((c) => c.to === SEPOLIA_WRAPPER);
    expect(toWrapper).to.have.length(1);
    const call = wrapperAbi.parseTransaction({ data: toWrapper[0].data })!;
    expect(call.name).to.equal("ownerOf");
    expect(toBeHex(call.args[0], 32)).to.equal(namehash("acme-audit.eth"));
    expect(await ownerOf(provider, ens, "acme-audit.eth")).to.equal(other);
  });

  it("takes the registry's owner of an unwrapped name, without asking the NameWrapper", async function () {
    const { provider, calls } = stubChain(11155111, me, other);
    expect(await nameOwnership(provider, ens, "acme-audit.eth")).to.deep.include({ wrapper: null, owner: me });
    expect(calls.every((c) => c.to === getAddress(CANONICAL_ENS_REGISTRY))).to.equal(true);
  });

  it("treats nothing as wrapped on a chain without a NameWrapper, even an owner at Sepolia's wrapper address", async function () {
    const { provider, calls } = stubChain(31337, SEPOLIA_WRAPPER, other);
    expect(await nameOwnership(provider, ens, "acme.test")).to.deep.include({ wrapper: null, owner: SEPOLIA_WRAPPER });
    expect(calls).to.have.length(1);
  });

  describe("what a key that does not own the name is told", function () {
    const wrapped = (owner: string): NameOwnership => ({
      name: "acme-audit.eth",
      registryOwner: SEPOLIA_WRAPPER,
      wrapper: SEPOLIA_WRAPPER,
      owner,
    });

    it("nothing when the key is the wrapped name's owner (its records are written)", function () {
      expect(notOwnerError(wrapped(me), me)).to.equal(null);
      expect(notOwnerError({ ...wrapped(me), registryOwner: me, wrapper: null }, me)).to.equal(null);
    });

    it("a wrapped name of another: ENS_FAILED naming the real owner (not the NameWrapper) and what to do", function () {
      const error = notOwnerError(wrapped(other), me)!;
      expect(isStatetrailError(error, "ENS_FAILED")).to.equal(true);
      expect(error.message).to.contain(`wrapped: the registry's owner is the NameWrapper ${SEPOLIA_WRAPPER}`);
      expect(error.message).to.contain(`whose owner of the name is ${other}, not by ${me}`);
      expect(error.hint).to.contain(`use the key of ${other} (--private-key-env)`);
      expect(error.hint).to.contain(`set the name's addr to ${me}`);
      expect(error.hint).to.contain("ENS app");
    });

    it("an unwrapped name of another: ENS_FAILED naming its owner", function () {
      const error = notOwnerError({ ...wrapped(other), registryOwner: other, wrapper: null }, me)!;
      expect(error.code).to.equal("ENS_FAILED");
      expect(error.message).to.equal(
        `acme-audit.eth is owned by ${other}, not by ${me}: this key may not change its records`,
      );
      expect(error.hint).to.not.contain("wrapped");
    });

    it("an unregistered name, or a wrapped one without owner (expired): ENS_FAILED saying to register it", function () {
      const unregistered = notOwnerError(
        { name: "acme-audit.eth", registryOwner: ZeroAddress, wrapper: null, owner: ZeroAddress },
        me,
      )!;
      expect(unregistered.message).to.equal("acme-audit.eth is not registered");
      expect(unregistered.hint).to.contain(`register acme-audit.eth for ${me}`);
      const expired = notOwnerError(wrapped(ZeroAddress), me)!;
      expect(expired.code).to.equal("ENS_FAILED");
      expect(expired.message).to.contain("expired");
    });
  });
});
