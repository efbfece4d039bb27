/**
 * Resource normalisation before matching: `.` and `..` segments are resolved and repeated
 * slashes collapsed, so `/workspace/docs/../../etc/passwd` is matched as `/etc/passwd` and a
 * `..` can never climb out of a matched prefix. URLs keep scheme and authority (lowercased) and
 * normalise their path the same way.
 * @module
 */

/** True when the text holds a C0 control character or DEL. */
export function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}

const URL_PREFIX = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)(.*)$/i;

/** Normalised resource, or `undefined` when the text can never name a resource safely. */
export function normaliseResource(resource: string): string | undefined {
  // control characters (NUL, tab, newline…) are dropped or mis-read by parsers downstream
  if (resource.length === 0 || hasControlCharacter(resource)) return undefined;
  const url = URL_PREFIX.exec(resource);
  if (url) {
    const [, scheme, authority, rest] = url;
    const cut = rest!.search(/[?#]/);
    let path = cut === -1 ? rest! : rest!.slice(0, cut);
    const suffix = cut === -1 ? '' : rest!.slice(cut);
    // the WHATWG URL parser (Node's fetch) reads "\" as "/" in special schemes
    if (SPECIAL_SCHEMES.has(scheme!.toLowerCase())) path = path.replaceAll('\\', '/');
    const normalisedPath = path === '' ? '' : normalisePath(decodeDots(path));
    if (normalisedPath === undefined) return undefined;
    return `${scheme!.toLowerCase()}://${authority!.toLowerCase()}${normalisedPath}${suffix}`;
  }
  return normalisePath(resource);
}

const SPECIAL_SCHEMES = new Set(['http', 'https', 'ws', 'wss', 'ftp', 'file']);

// servers decode %2e before resolving dot segments; so do we
function decodeDots(path: string): string {
  return path.replace(/%2e/gi, '.');
}

// Absolute paths clamp at the root (as the OS does); a relative path that climbs above its
// start names nothing a rule could be written for, so it is refused.
function normalisePath(path: string): string | undefined {
  const absolute = path.startsWith('/');
  const out: string[] = [];
  for (const segment of path.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') {
      if (out.length > 0) out.pop();
      else if (!absolute) return undefined;
      continue;
    }
    out.push(segment);
  }
  const joined = out.join('/');
  if (absolute) return `/${joined}`;
  return joined === '' ? '.' : joined;
}
