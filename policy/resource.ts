/**
 * Resource normalisation before matching: `.` and `..` segments are resolved and repeated
 * slashes collapsed, so `/workspace/docs/../../etc/passwd` is matched as `/etc/passwd` and a
 * `..` can never climb out of a matched prefix. URLs keep scheme and authority (lowercased) and
 * normalise their path the same way.
 * @module
 */

const URL_PREFIX = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)(.*)$/i;

/** Normalised resource, or `undefined` when the text can never name a resource (NUL bytes, empty). */
export function normaliseResource(resource: string): string | undefined {
  if (resource.length === 0 || resource.includes('\0')) return undefined;
  const url = URL_PREFIX.exec(resource);
  if (url) {
    const [, scheme, authority, rest] = url;
    const cut = rest!.search(/[?#]/);
    const path = cut === -1 ? rest! : rest!.slice(0, cut);
    const suffix = cut === -1 ? '' : rest!.slice(cut);
    const normalisedPath = path === '' ? '' : normalisePath(decodeDots(path));
    return `${scheme!.toLowerCase()}://${authority!.toLowerCase()}${normalisedPath}${suffix}`;
  }
  return normalisePath(resource);
}

// servers decode %2e before resolving dot segments; so do we
function decodeDots(path: string): string {
  return path.replace(/%2e/gi, '.');
}

function normalisePath(path: string): string {
  const absolute = path.startsWith('/');
  const out: string[] = [];
  for (const segment of path.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!absolute) out.push('..');
      continue;
    }
    out.push(segment);
  }
  const joined = out.join('/');
  if (absolute) return `/${joined}`;
  return joined === '' ? '.' : joined;
}
