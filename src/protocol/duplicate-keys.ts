import { visit } from "jsonc-parser";

/**
 * The first object member whose name (after unescaping) repeats an earlier one in the same object, or null.
 * JSON.parse keeps the last of duplicate names and other readers the first, so a document with duplicates can show
 * different readers different values (I-JSON, RFC 7493, forbids them). Streams over the text: memory is bounded by
 * the names of the objects open at one time, not by the document.
 */
export function firstDuplicateKey(text: string): { name: string; offset: number } | null {
  const open: Set<string>[] = [];
  let duplicate: { name: string; offset: number } | null = null;
  visit(text, {
    onObjectBegin: () => {
      open.push(new Set());
    },
    onObjectEnd: () => {
      open.pop();
    },
    onObjectProperty: (name, offset) => {
      const names = open[open.length - 1];
      if (!names) return;
      if (names.has(name)) duplicate ??= { name, offset };
      names.add(name);
    },
  });
  return duplicate;
}
