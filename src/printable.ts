/**
 * Text from others (a protocol, a bundle, an issuer's server, ENS) made inert for a terminal or a page: C0 controls
 * but tab and line feed (ESC starts ANSI sequences that move the cursor, clear or hide text; CR overwrites a line),
 * DEL, C1 controls and the bidirectional controls (which make the text after them read in another order) are shown
 * as `\u{…}` escapes instead of acting.
 */
const CONTROLS = "\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069";
const UNPRINTABLE = new RegExp(`[${CONTROLS}]`, "g");
/** The same, and the line feed. */
const UNPRINTABLE_IN_LINE = new RegExp(`[\\n${CONTROLS}]`, "g");

const visible = (c: string): string => `\\u{${c.codePointAt(0)!.toString(16)}}`;

/** `text` with every control shown as an escape; line feeds (and tabs) kept. */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, visible);
}

/** One line of a report: a line feed inside it (from a value) is shown as an escape too, so it can't start a line. */
export function printableLine(text: string): string {
  return text.replace(UNPRINTABLE_IN_LINE, visible);
}
