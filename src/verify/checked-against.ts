import { type Provider } from "ethers";
import { ensRegistryOf, publicRpcUrl, rpcUrlOf } from "../chain/provider";
import { type ChainSnapshot, type TrustedSetup } from "./chain";
import { type CheckedAgainst } from "./types";

/**
 * What a verification trusted, for the report (`checked_against`): the trusted setup given by the caller, the
 * ENS registry the provider reads (null when ENS is not read), the RPC endpoint without credentials, and the
 * block every read was pinned to with its hash (read with the block, else asked for). Never throws: what can't be
 * read is null.
 */
export async function checkedAgainst(
  trusted: TrustedSetup,
  provider: Provider,
  snapshot: ChainSnapshot | null,
  readsEns: boolean,
): Promise<CheckedAgainst> {
  const [ensRegistry, blockHash] = await Promise.all([
    readsEns ? ensRegistryOf(provider).catch(() => null) : null,
    snapshot?.blockHash ??
      (snapshot
        ? provider
            .getBlock(snapshot.blockNumber)
            .then((block) => block?.hash ?? null)
            .catch(() => null)
        : null),
  ]);
  const rpcUrl = rpcUrlOf(provider);
  return {
    chain_id: trusted.chainId,
    registries: {
      model: trusted.registries.model,
      certificate: trusted.registries.certificate,
      instance: trusted.registries.instance,
    },
    registries_source: trusted.source,
    ens_registry: ensRegistry,
    rpc_url: rpcUrl === null ? null : publicRpcUrl(rpcUrl),
    block_number: snapshot?.blockNumber ?? null,
    block_hash: blockHash,
  };
}
