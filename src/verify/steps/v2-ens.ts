import { ensNormalize } from "ethers";
import { type Step } from "../context";
import { originOf } from "../fetcher";
import { StatetrailError } from "../../errors";
import { Findings, sameAddress } from "../findings";
import { type EnsReader } from "../types";

/**
 * V2: ENS links the three names of the issuer. The issuer address's primary (reverse) name resolves
 * forward to the same address, matches the protocol's `ens_name` if one is given, and its `url` text record
 * has the origin the protocol was served from. Skipped when no ENS registry is configured.
 */
export const ensStep: Step = {
  id: "V2",
  async run({ protocol, ens, origin, expected }) {
    if (!ens) return { status: "skip", detail: "no ENS registry is configured for this chain" };
    const findings = new Findings();
    const address = protocol.issuer.address;
    const claimed = protocol.issuer.ens_name;
    // The name the protocol claims is the primary name in every honest protocol: its forward records are asked for
    // while the reverse record is read, and used only if the reverse record names exactly that name.
    // Read ahead only for a name of few labels: a resolver is looked for label by label up the name (one RPC call
    // each, one after another), and the claim is the protocol's, anyone's to write.
    const guess = claimed === null || !withinLimits(claimed, MAX_GUESSED_LABELS) ? null : forwardRecords(ens, claimed);
    guess?.catch(() => undefined); // awaited below, and its error reported, only if it is the one used
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
      if (!withinLimits(name, MAX_NAME_LABELS)) {
        // The reverse record is the issuer's to write, of any length: a resolver is looked for one label at a
        // time up the name, one RPC call each, so a name of thousands of labels would hold the verification.
        findings.error(
          new StatetrailError(
            "ENS_FAILED",
            `the primary name of ${address} (${name.length} characters, ${name.split(".").length} labels) is not ` +
              `resolved: the verifier resolves names of at most ${MAX_NAME_LENGTH} characters and ${MAX_NAME_LABELS} labels`,
            { hint: "the issuer should set a primary name of ordinary length (ENS names follow DNS: 255 characters)" },
          ),
        );
        return findings.outcome("");
      }
      // As written: the report shows the protocol's spelling, so "ACME.test" or full-width letters, which normalise
      // to the primary name, are not it.
      if (claimed !== null && claimed !== name) {
        findings.fail(`protocol names ENS name ${claimed}, the issuer's primary name is ${name}`, "ENS_FAILED");
      }
      // The name the auditor asked about must be the one the issuer calls itself: anyone can point a name of theirs
      // at any address (and url), so a name's forward records alone would let it borrow another issuer's protocols.
      const asked = expected?.ensName;
      if (asked !== undefined && normalizedOrSelf(asked) !== name) {
        findings.fail(
          `the name asked about, ${asked}, resolves to the issuer ${address}, whose primary name is ${name}: ` +
            `the issuer does not claim ${asked}`,
          "ENS_FAILED",
        );
      }
      const { forward, url } = await (guess !== null && claimed === name ? guess : forwardRecords(ens, name));
      if (!sameAddress(forward, address)) {
        findings.fail(`${name} resolves to ${forward ?? "no address"}, not the issuer ${address}`, "ENS_FAILED");
      }
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

/** The forward address and `url` text record of `name`, asked for together (their reads share round trips). */
async function forwardRecords(ens: EnsReader, name: string): Promise<{ forward: string | null; url: string | null }> {
  const [forward, url] = await Promise.all([ens.resolveAddress(name), ens.text(name, "url")]);
  return { forward, url };
}

/** DNS's limit on a name's length, which ENS names follow in practice; more labels than any name in use. */
const MAX_NAME_LENGTH = 255;
const MAX_NAME_LABELS = 32;
const MAX_GUESSED_LABELS = 8;

/** A name of at most {@link MAX_NAME_LENGTH} characters and `maxLabels` labels. */
function withinLimits(name: string, maxLabels: number): boolean {
  return name.length <= MAX_NAME_LENGTH && name.split(".").length <= maxLabels;
}

function normalizedOrSelf(name: string): string {
  try {
    return ensNormalize(name);
  } catch {
    return name;
  }
}
