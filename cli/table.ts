/**
 * Plain-text tables for terminal output.
 * @module
 */

/** Renders rows under headers with padded columns; cells longer than `maxCell` are cut with `…`. */
export function renderTable(
  headers: readonly string[],
  rows: readonly (readonly string[])[],
  maxCell = 60,
): string {
  const cut = (cell: string): string => (cell.length > maxCell ? `${cell.slice(0, maxCell - 1)}…` : cell);
  const all = [headers, ...rows].map((row) => row.map(cut));
  const widths = headers.map((_, i) => Math.max(...all.map((row) => (row[i] ?? '').length)));
  const line = (row: readonly string[]): string =>
    row
      .map((cell, i) => cell.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(all[0]!), line(widths.map((w) => '-'.repeat(w))), ...all.slice(1).map(line)].join('\n');
}
