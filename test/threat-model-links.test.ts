/**
 * docs/threat-model.md proves its claims by linking hostile tests as [`exact test title`](../path). These
 * links must not rot: every relative link must name a file that exists (and a heading that exists, for
 * `.md#anchor` links), every link to a source file must carry a title, and that title must occur in the
 * file as a string literal. Every threat must link at least one test.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';

const DOC_FILE = fileURLToPath(new URL('../docs/threat-model.md', import.meta.url));

interface Link {
  readonly text: string;
  readonly target: string;
  readonly line: number;
}

/** Markdown without fenced code blocks (line numbers kept). */
function withoutFences(markdown: string): string {
  return markdown.replace(/^```[^\n]*\n[\s\S]*?^```$/gm, (block) => block.replace(/[^\n]/g, ''));
}

/** Every inline link `[text](target)` outside code fences. */
function linksOf(markdown: string): Link[] {
  const links: Link[] = [];
  withoutFences(markdown)
    .split('\n')
    .forEach((line, i) => {
      for (const match of line.matchAll(/\[((?:`[^`]*`|[^\]`])+)\]\(([^)\s]+)\)/g))
        links.push({ text: match[1]!, target: match[2]!, line: i + 1 });
    });
  return links;
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens. */
function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  for (const match of withoutFences(markdown).matchAll(/^#{1,6}\s+(.+)$/gm)) {
    const slug = match[1]!
      .trim()
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    anchors.add(slug);
  }
  return anchors;
}

const escapeRegex = (text: string): string => text.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&');

/** Whether `title` occurs in `source` as a whole string literal ('…', "…" or `…`). */
function occursAsLiteral(source: string, title: string): boolean {
  const body = escapeRegex(title);
  return new RegExp(`'${body}'|"${body}"|\`${body}\``).test(source);
}

const isRelative = (target: string): boolean => !/^[a-z][a-z0-9+.-]*:/i.test(target);

/** Every broken link of a markdown file whose relative links resolve against `baseDir`. */
function linkProblems(markdown: string, baseDir: string, selfFile: string): string[] {
  const problems: string[] = [];
  const sources = new Map<string, string>();
  const read = (file: string): string => {
    let text = sources.get(file);
    if (text === undefined) {
      text = readFileSync(file, 'utf8');
      sources.set(file, text);
    }
    return text;
  };
  for (const link of linksOf(markdown)) {
    if (!isRelative(link.target)) continue;
    const at = `line ${link.line}: ${link.target}`;
    const [path = '', anchor] = link.target.split('#', 2);
    const file = path === '' ? selfFile : resolve(baseDir, path);
    if (!existsSync(file)) {
      problems.push(`${at}: no such file`);
      continue;
    }
    const headings =
      path === '' ? anchorsOf(markdown) : file.endsWith('.md') ? anchorsOf(read(file)) : undefined;
    if (anchor !== undefined && headings !== undefined && !headings.has(anchor)) {
      problems.push(`${at}: no heading #${anchor}`);
    }
    const title = /^`([^`]+)`$/.exec(link.text)?.[1];
    if (file.endsWith('.ts')) {
      if (title === undefined)
        problems.push(`${at}: a link to a test file must be [\`exact test title\`](…)`);
      else if (!occursAsLiteral(read(file), title))
        problems.push(`${at}: the title "${title}" is not in the file`);
    }
  }
  return problems;
}

/** `### ` sections under `## Threats` that link no test file. */
function threatsWithoutProof(markdown: string): string[] {
  const threats = /^## Threats$([\s\S]*?)(?=^## )/m.exec(withoutFences(markdown))?.[1] ?? '';
  return threats
    .split(/^(?=### )/m)
    .filter((section) => section.startsWith('### '))
    .filter((section) => !linksOf(section).some((l) => /^`[^`]+`$/.test(l.text) && /\.ts$/.test(l.target)))
    .map((section) => section.split('\n')[0]!);
}

describe('docs/threat-model.md', () => {
  const doc = readFileSync(DOC_FILE, 'utf8');

  test('every relative link names an existing file, heading and test title', () => {
    expect(linkProblems(doc, dirname(DOC_FILE), DOC_FILE)).toEqual([]);
  });

  test('links many hostile tests, and every threat at least one', () => {
    const titled = linksOf(doc).filter((l) => /^`[^`]+`$/.test(l.text) && l.target.endsWith('.ts'));
    expect(titled.length).toBeGreaterThanOrEqual(80);
    const threats = doc.match(/^### /gm)?.length ?? 0;
    expect(threats).toBeGreaterThanOrEqual(14);
    expect(threatsWithoutProof(doc)).toEqual([]);
  });
});

describe('the link check itself', () => {
  const base = dirname(DOC_FILE);
  const self = resolve(base, 'threat-model.md');

  test('reports a missing file, a wrong title, an untitled test link and a missing anchor', () => {
    const markdown = [
      '# Title',
      '[`refuses a host that is not on the allow-list, before resolving or connecting`](../activities/tools/http.test.ts)',
      '[`a title no test has`](../activities/tools/http.test.ts)',
      '[`anything`](../test/no-such.test.ts)',
      '[the http tests](../activities/tools/http.test.ts)',
      '[a heading](#title) and [no heading](#nowhere) and [outside](https://example.com/x.ts)',
      '```',
      '[`inside a fence`](../nowhere.test.ts)',
      '```',
    ].join('\n');
    expect(linkProblems(markdown, base, self)).toEqual([
      'line 3: ../activities/tools/http.test.ts: the title "a title no test has" is not in the file',
      'line 4: ../test/no-such.test.ts: no such file',
      'line 5: ../activities/tools/http.test.ts: a link to a test file must be [`exact test title`](…)',
      'line 6: #nowhere: no heading #nowhere',
    ]);
  });

  test('a title must be a whole string literal, not a fragment of one', () => {
    const source = "it('refuses a host that is not on the allow-list', () => {});";
    expect(occursAsLiteral(source, 'refuses a host that is not on the allow-list')).toBe(true);
    expect(occursAsLiteral(source, 'refuses a host')).toBe(false);
  });

  test('a threat without a test link is reported', () => {
    const markdown =
      '## Threats\n\n### 1. Proved\n\n[`t`](../x.test.ts)\n\n### 2. Unproved\n\nwords\n\n## After\n';
    expect(threatsWithoutProof(markdown)).toEqual(['### 2. Unproved']);
  });
});
