/**
 * Durations in governance documents: `90s`, `15m`, `4h`, `1d`, `1h30m`, or ISO 8601 (`PT4H`, `P1D`).
 * @module
 */

const SHORT = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/;
const ISO = /^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$/;
const UNITS_MS = [86_400_000, 3_600_000, 60_000, 1_000] as const;

/** Longest duration a document may state (one year). */
export const MAX_DURATION_MS = 366 * 86_400_000;

/** Parses a duration to milliseconds; `undefined` when the text is not a positive duration. */
export function parseDuration(text: string): number | undefined {
  const match = SHORT.exec(text) ?? ISO.exec(text);
  if (!match || text === 'P' || text.endsWith('T')) return undefined;
  let ms = 0;
  let any = false;
  for (let i = 0; i < UNITS_MS.length; i++) {
    const part = match[i + 1];
    if (part === undefined) continue;
    any = true;
    ms += Number(part) * UNITS_MS[i]!;
  }
  if (!any || ms <= 0 || ms > MAX_DURATION_MS) return undefined;
  return ms;
}
