import fs from "node:fs";

/**
 * A bundle's text as one reads it: scripts/build-cli.js minifies the bundles into lines of some 500 characters, and
 * esbuild breaks a long line inside a string with a line continuation (a backslash before the newline), which is
 * removed here.
 */
export function bundleText(file: string): string {
  return fs.readFileSync(file, "latin1").replace(/\\\n/g, "");
}
