import { isStatetrailError } from "../../errors";
import { parseProtocol, protocolSchema, type InstanceProtocol } from "../../protocol/schema";
import { contentUrls } from "../../protocol/urls";
import { type VerifyContext } from "../context";
import { originOf } from "../fetcher";
import { Findings, iso, sameAddress, short, type StepOutcome } from "../findings";
import { type ServerCertificate } from "../types";

/** Where the issuer's server publishes an instance's protocol (DESIGN.md, "Instance protocol"). */
export function protocolUrl(origin: string, instanceHash: string): string {
  return `${origin}/instances/${instanceHash}/protocol`;
}

/**
 * V1: obtain the protocol and the issuer server's certificate. A URL input is fetched over TLS and must be
 * served from the issuer's own origin; a file or object input is schema-checked, then the issuer's server
 * is asked for the same instance's protocol so that its certificate is captured all the same.
 * Fills `context.protocol`, `context.origin` and `context.certificate`.
 */
export async function readProtocol(context: VerifyContext): Promise<StepOutcome> {
  const findings = new Findings();
  const { input } = context;
  if ("url" in input) {
    const url = checkedHttps(input.url, findings, "protocol URL");
    if (!url) return findings.outcome("");
    let bytes: Buffer;
    let certificate: ServerCertificate | null;
    try {
      ({ bytes, certificate } = await context.web.get(url.href, context.settings.maxBytes.protocol));
    } catch (error) {
      findings.error(error, `fetching ${url.href}`);
      return findings.outcome("");
    }
    const protocol = parse(bytes, findings, url.href);
    if (!protocol) return findings.outcome("");
    context.protocol = protocol;
    context.origin = url.origin;
    const issuerOrigin = issuerOriginOf(protocol, findings);
    context.web.restrictTo(issuerOrigin ?? url.origin);
    checkContentUrls(protocol, findings);
    if (!certificate) {
      findings.fail(`${url.href} was not served over TLS: no server certificate`, "TLS_FAILED");
      return findings.outcome("");
    }
    context.certificate = certificate;
    if (issuerOrigin && issuerOrigin !== url.origin) {
      findings.fail(`protocol served from ${url.origin}, but its issuer url is ${protocol.issuer.url}`);
    }
    return findings.outcome(
      `fetched ${url.href} over TLS (${bytes.length} bytes); server certificate ${describe(certificate)}`,
    );
  }

  const name = input.name ?? "protocol object";
  const protocol = parse(input.protocol, findings, name);
  if (!protocol) return findings.outcome("");
  context.protocol = protocol;
  const issuerOrigin = issuerOriginOf(protocol, findings);
  if (!issuerOrigin) return findings.outcome("");
  context.origin = issuerOrigin;
  context.web.restrictTo(issuerOrigin);
  checkContentUrls(protocol, findings);
  const url = checkedHttps(protocolUrl(issuerOrigin, protocol.instance_hash), findings, "issuer url");
  if (!url) return findings.outcome("");
  try {
    const served = await context.web.get(url.href, context.settings.maxBytes.protocol);
    if (!served.certificate) {
      findings.fail(`${url.href} was not served over TLS: no server certificate`, "TLS_FAILED");
      return findings.outcome("");
    }
    context.certificate = served.certificate;
    const published = parse(served.bytes, new Findings(), url.href);
    if (
      !published ||
      published.instance_hash !== protocol.instance_hash ||
      !sameAddress(published.issuer.address, protocol.issuer.address)
    ) {
      findings.fail(`the issuer's server does not publish this instance's protocol at ${url.href}`);
    }
    return findings.outcome(
      `read ${name}; the issuer's server publishes it at ${url.href} over TLS; server certificate ${describe(served.certificate)}`,
    );
  } catch (error) {
    findings.error(error, `fetching ${url.href} to capture the issuer's certificate`);
    return findings.outcome("");
  }
}

function parse(
  source: InstanceProtocol | string | Uint8Array,
  findings: Findings,
  name: string,
): InstanceProtocol | null {
  if (typeof source !== "string" && !(source instanceof Uint8Array)) {
    const result = protocolSchema.safeParse(source);
    if (result.success) return result.data;
    const problems = result.error.issues.map((issue) => `${issue.path.join(".") || "(root)"}: ${issue.message}`);
    findings.fail(`${name} does not match the protocol schema: ${problems.join("; ")}`, "PROTOCOL_INVALID");
    return null;
  }
  try {
    return parseProtocol(source);
  } catch (error) {
    if (isStatetrailError(error)) findings.fail(`${name}: ${error.message.replace(/\n\s*/g, "; ")}`, error.code);
    else findings.error(error, name);
    return null;
  }
}

function checkedHttps(value: string, findings: Findings, what: string): URL | null {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    findings.fail(`${what} is not a URL: "${value}"`);
    return null;
  }
  if (url.protocol !== "https:") {
    findings.fail(`${what} ${url.href} is not https: the protocol must be served over TLS`, "TLS_FAILED");
    return null;
  }
  return url;
}

function issuerOriginOf(protocol: InstanceProtocol, findings: Findings): string | null {
  try {
    return originOf(protocol.issuer.url);
  } catch {
    findings.fail(`issuer url is not a URL: "${protocol.issuer.url}"`);
    return null;
  }
}

function describe(certificate: ServerCertificate): string {
  return `${short(certificate.fingerprint)} (valid ${iso(certificate.notBefore)} to ${iso(certificate.notAfter)})`;
}

/**
 * Every data URL of a protocol is the issuer's content-addressed URL for its hash (DESIGN.md): anything
 * else is refused rather than fetched.
 */
export function checkContentUrls(protocol: InstanceProtocol, findings: Findings): void {
  const urls = contentUrls(protocol.issuer.url);
  const expected: Array<[string, string, string]> = [
    ["model_data", protocol.model_data, urls.model(protocol.model_hash)],
    ["instance_data", protocol.instance_data, urls.input(protocol.instance_hash)],
  ];
  for (const entry of protocol.instance_protocol) {
    expected.push([`state_data of seq ${entry.seq}`, entry.state_data, urls.state(entry.state_hash)]);
  }
  const wrong = expected.filter(([, actual, canonical]) => actual !== canonical);
  for (const [what, actual, canonical] of wrong.slice(0, 5)) {
    findings.fail(`${what} is ${actual}, not the issuer's content-addressed URL ${canonical}`);
  }
  if (wrong.length > 5) findings.fail(`${wrong.length - 5} more data URLs are not the issuer's`);
}
