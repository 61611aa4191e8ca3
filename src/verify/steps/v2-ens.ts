import { ensNormalize } from "ethers";
import { type Step } from "../context";
import { originOf } from "../fetcher";
import { Findings, sameAddress } from "../findings";

/**
 * V2: ENS links the three names of the issuer. The issuer address's primary (reverse) name resolves
 * forward to the same address, matches the protocol's `ens_name` if one is given, and its `url` text record
 * has the origin the protocol was served from. Skipped when no ENS registry is configured.
 */
export const ensStep: Step = {
  id: "V2",
  async run({ protocol, ens, origin }) {
    if (!ens) return { status: "skip", detail: "no ENS registry is configured for this chain" };
    const findings = new Findings();
    const address = protocol.issuer.address;
    try {
      const name = await ens.primaryName(address);
      if (!name) {
        findings.fail(`issuer ${address} has no primary ENS name`, "ENS_FAILED");
        return findings.outcome("");
      }
      let normalized: string | null = null;
      try {
        normalized = ensNormalize(name);
      } catch {
        normalized = null;
      }
      if (normalized !== name) {
        findings.fail(`the primary name "${name}" of ${address} is not in ENS-normalised form`, "ENS_FAILED");
        return findings.outcome("");
      }
      const claimed = protocol.issuer.ens_name;
      if (claimed !== null && normalizedOrSelf(claimed) !== name) {
        findings.fail(`protocol names ENS name ${claimed}, the issuer's primary name is ${name}`, "ENS_FAILED");
      }
      const forward = await ens.resolveAddress(name);
      if (!sameAddress(forward, address)) {
        findings.fail(`${name} resolves to ${forward ?? "no address"}, not the issuer ${address}`, "ENS_FAILED");
      }
      const url = await ens.text(name, "url");
      let urlOrigin: string | null = null;
      try {
        urlOrigin = url ? originOf(url) : null;
      } catch {
        urlOrigin = null;
      }
      if (!url) findings.fail(`${name} has no url text record`, "ENS_FAILED");
      else if (urlOrigin !== origin) {
        findings.fail(`${name}'s url record is ${url}, but the protocol is served from ${origin}`, "ENS_FAILED");
      }
      return findings.outcome(`${address} ⇄ ${name}; url record ${url} has the protocol's origin`);
    } catch (error) {
      findings.error(error, "ENS lookup");
      return findings.outcome("");
    }
  },
};

function normalizedOrSelf(name: string): string {
  try {
    return ensNormalize(name);
  } catch {
    return name;
  }
}
