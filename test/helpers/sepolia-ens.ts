/**
 * ENS on a chain that mimics Sepolia, at Sepolia's real addresses: the registry at the canonical
 * 0x00000000000C2E074eC69A0dFb2997BA6C7d2e1e, the public resolver and the reverse registrar at the addresses the
 * committed deployments/sepolia record names (those of @ensdomains/ensjs's Sepolia chain definition), so that the
 * CLI runs on the mimic with the committed record, unchanged. The code is ENS's own from the npm packages
 * (@ensdomains/ens 0.6.2, @ensdomains/resolver 0.3.1; statetrail writes no ENS contract): each contract is
 * deployed normally, then its runtime code and its constructor-written storage are copied to the real address
 * with hardhat_setCode / hardhat_setStorageAt (no immutables in these 0.5-era contracts, so that is the whole
 * contract). `.eth` is given to a FIFS registrar: on Sepolia names come from the ENS app, here from it.
 *
 * Not here: NameWrapper (no npm package ships its bytecode), so names on the mimic are unwrapped.
 */
import {
  AbiCoder,
  ContractFactory,
  ZeroHash,
  getAddress,
  keccak256,
  namehash,
  type JsonRpcProvider,
  type Signer,
} from "ethers";
import { ensArtifact, ensContract, labelhash, type EnsContractName } from "../../src/chain/ens";
import { loadDeployment } from "../../src/chain/deployments";
import { CANONICAL_ENS_REGISTRY } from "../../src/chain/provider";

export interface SepoliaEns {
  registry: string;
  publicResolver: string;
  reverseRegistrar: string;
  /** The FIFS registrar owning `.eth` on the mimic (stands in for the ENS app's registration). */
  fifsEth: string;
}

/** Storage slots scanned for what the constructors write (PublicResolver keeps `ens` after its profiles' mappings). */
const CONSTRUCTOR_SLOTS = 32;

async function deployAndTransplant(
  provider: JsonRpcProvider,
  signer: Signer,
  name: EnsContractName,
  args: unknown[],
  target: string,
): Promise<void> {
  const artifact = ensArtifact(name);
  const contract = await new ContractFactory(artifact.abi, artifact.bytecode, signer).deploy(...args);
  await contract.waitForDeployment();
  const from = await contract.getAddress();
  await provider.send("hardhat_setCode", [target, await provider.getCode(from)]);
  for (let slot = 0; slot < CONSTRUCTOR_SLOTS; slot++) {
    const value = await provider.getStorage(from, slot);
    if (value !== ZeroHash) await provider.send("hardhat_setStorageAt", [target, `0x${slot.toString(16)}`, value]);
  }
}

/**
 * Installs ENS at Sepolia's addresses on a fresh mimic chain, configured by `admin` (funded, automine on), and
 * returns where everything is. The ENS root ends up owned by `admin`.
 */
export async function installSepoliaEns(provider: JsonRpcProvider, admin: Signer): Promise<SepoliaEns> {
  const committed = loadDeployment("sepolia").ens;
  const publicResolver = getAddress(committed.publicResolver!);
  const reverseRegistrar = getAddress(committed.reverseRegistrar!);
  const me = await admin.getAddress();

  await provider.send("hardhat_setCode", [CANONICAL_ENS_REGISTRY, ensArtifact("ENSRegistry").deployedBytecode]);
  // ENSRegistry keeps `mapping(bytes32 => Record) records` in slot 0; Record.owner is the first field.
  const rootOwnerSlot = keccak256(AbiCoder.defaultAbiCoder().encode(["bytes32", "uint256"], [ZeroHash, 0]));
  await provider.send("hardhat_setStorageAt", [
    CANONICAL_ENS_REGISTRY,
    rootOwnerSlot,
    AbiCoder.defaultAbiCoder().encode(["address"], [me]),
  ]);
  const registry = ensContract("ENSRegistry", CANONICAL_ENS_REGISTRY, admin);
  const wait = async (tx: Promise<{ wait(): Promise<unknown> }>) => (await tx).wait();

  await deployAndTransplant(provider, admin, "PublicResolver", [CANONICAL_ENS_REGISTRY], publicResolver);
  await wait(registry.setSubnodeOwner(ZeroHash, labelhash("reverse"), me));
  await deployAndTransplant(
    provider,
    admin,
    "ReverseRegistrar",
    [CANONICAL_ENS_REGISTRY, publicResolver],
    reverseRegistrar,
  );
  await wait(registry.setSubnodeOwner(namehash("reverse"), labelhash("addr"), reverseRegistrar));

  // resolver.eth → the public resolver, the way statetrail (findEns) and clients discover it on Sepolia.
  await wait(registry.setSubnodeOwner(ZeroHash, labelhash("eth"), me));
  await wait(registry.setSubnodeOwner(namehash("eth"), labelhash("resolver"), me));
  await wait(registry.setResolver(namehash("resolver.eth"), publicResolver));
  const resolver = ensContract("PublicResolver", publicResolver, admin);
  await wait(resolver["setAddr(bytes32,address)"](namehash("resolver.eth"), publicResolver));

  const fifsArtifact = ensArtifact("FIFSRegistrar");
  const fifs = await new ContractFactory(fifsArtifact.abi, fifsArtifact.bytecode, admin).deploy(
    CANONICAL_ENS_REGISTRY,
    namehash("eth"),
  );
  await fifs.waitForDeployment();
  const fifsEth = await fifs.getAddress();
  await wait(registry.setSubnodeOwner(ZeroHash, labelhash("eth"), fifsEth));
  return { registry: CANONICAL_ENS_REGISTRY, publicResolver, reverseRegistrar, fifsEth };
}
