import { type Provider } from "ethers";
import { ensRegistryOf, publicRpcUrl, REDACTED, rpcUrlOf } from "../chain/provider";
import { type ChainSnapshot, type TrustedSetup } from "./chain";
import { type CheckedAgainst } from "./types";

/**
 * What a verification trusted, for the report (`checked_against`): the trusted setup given by the caller, the
 * ENS registry the provider reads (null when ENS is not read), the RPC endpoint without credentials, and the
 * block every read was pinned to with its hash. Never throws: what can't be read is null.
 */
export async function checkedAgainst(
  trusted: TrustedSetup,
  provider: Provider,
  snapshot: ChainSnapshot | null,
  readsEns: boolean,
): Promise<CheckedAgainst> {
  const [ensRegistry, blockHash] = await Promise.all([
    readsEns ? ensRegistryOf(provider).catch(() => null) : null,
    snapshot
      ? provider
          .getBlock(snapshot.blockNumber)
          .then((block) => block?.hash ?? null)
          .catch(() => null)
      : null,
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
    rpc_url: rpcUrl === null ? null : withoutKeyNames(publicRpcUrl(rpcUrl)),
    block_number: snapshot?.blockNumber ?? null,
    block_hash: blockHash,
  };
}

/**
 * publicRpcUrl replaces every query value but keeps the names (`?apikey=REDACTED`); an endpoint given as
 * `…/rpc?<key>` has the credential as the name. Only names that are short words stay.
 */
function withoutKeyNames(url: string | null): string | null {
  if (url === null || !url.includes("?")) return url;
  const at = url.indexOf("?");
  const names = url
    .slice(at + 1)
    .split("&")
    .map((pair) => {
      const [name, ...value] = pair.split("=");
      return `${/^[A-Za-z_-]{1,16}$/.test(name) ? name : REDACTED}${value.length > 0 ? `=${value.join("=")}` : ""}`;
    });
  return `${url.slice(0, at)}?${names.join("&")}`;
}
