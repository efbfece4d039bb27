import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ModelError, ModelErrorCode } from './errors.ts';
import {
  createScriptedProvider,
  loadScriptFile,
  parseScript,
  playScript,
  SCRIPT_FINISHED,
  ScriptError,
  validateTurns,
} from './scripted.ts';
import type { ChatMessage, ModelRequest, ScriptedTurn } from './types.ts';

const SCRIPT = `
turns:
  - say: Let me look at the file.
    calls:
      - tool: fs.read
        args: { path: README.md }
        rationale: the user asked about it
      - tool: time.now
  - final: The README says hello.
    usage: { inputTokens: 120, outputTokens: 8 }
`;

function request(turns: readonly ScriptedTurn[], messages: readonly ChatMessage[]): ModelRequest {
  return {
    agentId: 'agent-1',
    runId: 'run-1',
    turn: 0,
    model: { provider: 'scripted', turns },
    messages,
    tools: [],
  };
}

const user: ChatMessage = { role: 'user', content: 'What does the README say?' };

function errorOf(fn: () => unknown): ModelError {
  try {
    fn();
  } catch (error) {
    if (error instanceof ModelError) return error;
    throw error;
  }
  throw new Error('expected a ModelError');
}

describe('parseScript', () => {
  it('returns frozen turns, defaulting missing args to {}', () => {
    const turns = parseScript(SCRIPT, 'script.yaml');
    expect(turns).toEqual([
      {
        say: 'Let me look at the file.',
        calls: [
          { tool: 'fs.read', args: { path: 'README.md' }, rationale: 'the user asked about it' },
          { tool: 'time.now', args: {} },
        ],
      },
      { final: 'The README says hello.', usage: { inputTokens: 120, outputTokens: 8 } },
    ]);
    expect(Object.isFrozen(turns)).toBe(true);
    expect(Object.isFrozen(turns[0]?.calls?.[0]?.args)).toBe(true);
  });

  it('accepts JSON', () => {
    expect(parseScript('{"turns":[{"final":"ok"}]}', 'script.json')).toEqual([{ final: 'ok' }]);
  });

  it('reports every problem with file, line and YAML path', () => {
    const text = `turns:
  - say: hi
    calls:
      - tool: 3
        args: {}
  - final: x
    calls: []
  - {}
  - final: 1
    extra: 2
    usage: { inputTokens: 1.5, outputTokens: -1 }
  - say: a
    final: b
`;
    const error = errorOf(() => parseScript(text, 'script.yaml'));
    expect(error).toBeInstanceOf(ScriptError);
    expect(error.code).toBe(ModelErrorCode.scriptInvalid);
    expect(error.retryable).toBe(false);
    expect(error.message).toMatchInlineSnapshot(`
      "invalid script (9 problems):
      script.yaml:4: turns[0].calls[0].tool: expected a string, got number 3
      script.yaml:6: turns[1]: expected either "calls" or "final", not both
      script.yaml:7: turns[1].calls: expected at least 1 item, got 0 items
      script.yaml:8: turns[2]: expected "calls" (a non-empty list) or "final"
      script.yaml:9: turns[3].final: expected a string, got number 1
      script.yaml:10: turns[3].extra: unknown key "extra" (expected one of: say, calls, final, usage, thinkMs)
      script.yaml:11: turns[3].usage.inputTokens: expected an integer, got number 1.5
      script.yaml:11: turns[3].usage.outputTokens: expected at least 0, got number -1
      script.yaml:12: turns[4].say: "say" goes with "calls"; a final turn gives its text in "final""
    `);
  });

  it('names a missing tool and an unknown call key', () => {
    const text = `turns:
  - calls:
      - args: { path: a }
        reason: nope
`;
    expect(errorOf(() => parseScript(text, 'script.yaml')).message).toMatchInlineSnapshot(`
      "invalid script (2 problems):
      script.yaml:3: turns[0].calls[0].tool: missing required key: expected a string
      script.yaml:4: turns[0].calls[0].reason: unknown key "reason" (expected one of: tool, args, rationale)"
    `);
  });

  it('rejects empty, non-mapping, turn-less and broken YAML', () => {
    const messages = ['', '- a', 'turns: []', 'turns: 3', 'turns: [', 'a: 1\na: 2'].map(
      (text) => errorOf(() => parseScript(text, 's.yaml')).message,
    );
    expect(messages).toMatchInlineSnapshot(`
      [
        "invalid script (1 problem):
      s.yaml: (root): expected a script with "turns", got an empty file",
        "invalid script (1 problem):
      s.yaml:1: (root): expected a mapping, got a list",
        "invalid script (1 problem):
      s.yaml:1: turns: expected at least 1 item, got 0 items",
        "invalid script (1 problem):
      s.yaml:1: turns: expected a list, got number 3",
        "invalid script (1 problem):
      s.yaml:1: (root): invalid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]",
        "invalid script (1 problem):
      s.yaml:2: (root): invalid YAML: Map keys must be unique",
      ]
    `);
  });
});

describe('validateTurns', () => {
  it('validates turns arriving as a value', () => {
    expect(errorOf(() => validateTurns([{ calls: [{ tool: '' }] }])).message).toMatchInlineSnapshot(`
      "invalid script (1 problem):
      (model config): turns[0].calls[0].tool: expected a non-empty string"
    `);
  });
});

describe('loadScriptFile', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('reads and parses a file, naming it in errors', async () => {
    dir = await mkdtemp(join(tmpdir(), 'script-'));
    const good = join(dir, 'good.yaml');
    const bad = join(dir, 'bad.yaml');
    await writeFile(good, SCRIPT);
    await writeFile(bad, 'turns:\n  - final: [1]\n');
    expect(await loadScriptFile(good)).toEqual(parseScript(SCRIPT, 'x'));
    await expect(loadScriptFile(bad)).rejects.toThrow(
      `${bad}:2: turns[0].final: expected a string, got a list`,
    );
    await expect(loadScriptFile(join(dir, 'missing.yaml'))).rejects.toThrow(
      `${join(dir, 'missing.yaml')}: (root): cannot read: ENOENT`,
    );
  });
});

describe('scripted provider', () => {
  const turns = parseScript(SCRIPT, 'script.yaml');
  const provider = createScriptedProvider();

  it('plays turns[n] where n = assistant messages so far, with deterministic call ids', async () => {
    const first = await provider.complete(request(turns, [user]));
    expect(first).toEqual({
      content: 'Let me look at the file.',
      toolCalls: [
        {
          id: 'call_0_0',
          tool: 'fs.read',
          args: { path: 'README.md' },
          rationale: 'the user asked about it',
        },
        { id: 'call_0_1', tool: 'time.now', args: {}, rationale: 'Let me look at the file.' },
      ],
      finishReason: 'tool_calls',
      // ceil(25 / 4) in; ceil((24 + 7 + 20 + 8 + 2) / 4) out
      usage: { inputTokens: 7, outputTokens: 16 },
      provider: 'scripted',
      model: 'script',
    });
    // the same request gets the same reply
    expect(await provider.complete(request(turns, [user]))).toEqual(first);
    expect(provider.name).toBe('scripted');

    const history: ChatMessage[] = [
      user,
      { role: 'assistant', content: first.content, toolCalls: first.toolCalls },
      { role: 'tool', toolCallId: 'call_0_0', tool: 'fs.read', content: '{"ok":true}' },
      { role: 'tool', toolCallId: 'call_0_1', tool: 'time.now', content: '{"ok":true}' },
    ];
    const second = await provider.complete(request(turns, history));
    expect(second).toEqual({
      content: 'The README says hello.',
      toolCalls: [],
      finishReason: 'stop',
      usage: { inputTokens: 120, outputTokens: 8 },
      provider: 'scripted',
      model: 'script',
    });
  });

  it('answers "(script finished)" past the end', () => {
    const messages: ChatMessage[] = [
      user,
      { role: 'assistant', content: 'a', toolCalls: [] },
      { role: 'user', content: 'more' },
      { role: 'assistant', content: 'b', toolCalls: [] },
      { role: 'user', content: 'again' },
    ];
    const reply = playScript(request(turns, messages));
    expect(reply.content).toBe(SCRIPT_FINISHED);
    expect(reply.toolCalls).toEqual([]);
    expect(reply.finishReason).toBe('stop');
    // ceil((25 + 1 + 4 + 1 + 5) / 4) in, ceil(17 / 4) out
    expect(reply.usage).toEqual({ inputTokens: 9, outputTokens: 5 });
  });

  it('refuses an invalid script in the model config as non-retryable', async () => {
    const bad = [{ final: 'x', calls: [{ tool: 'a' }] }] as unknown as ScriptedTurn[];
    await expect(provider.complete(request(bad, [user]))).rejects.toMatchObject({
      code: ModelErrorCode.scriptInvalid,
      retryable: false,
      message: expect.stringContaining(
        '(model config): turns[0]: expected either "calls" or "final", not both',
      ),
    });
  });

  it('refuses another provider config and honours an aborted signal', async () => {
    const other = {
      ...request(turns, [user]),
      model: { provider: 'openai-compatible' },
    } as unknown as ModelRequest;
    await expect(provider.complete(other)).rejects.toMatchObject({ code: ModelErrorCode.badRequest });
    const controller = new AbortController();
    controller.abort(new Error('cancelled'));
    await expect(provider.complete(request(turns, [user]), controller.signal)).rejects.toThrow('cancelled');
  });
});

describe('thinkMs', () => {
  it('a turn with thinkMs answers after that long; a validated script rejects a negative one', async () => {
    const provider = createScriptedProvider();
    const turns = validateTurns([{ calls: [{ tool: 'fs.read', args: {} }], thinkMs: 120 }]);
    const started = performance.now();
    await provider.complete({
      model: { provider: 'scripted', turns },
      messages: [{ role: 'user', content: 'go' }],
      tools: [],
    } as never);
    expect(performance.now() - started).toBeGreaterThanOrEqual(110);
    expect(() => validateTurns([{ final: 'x', thinkMs: -1 }])).toThrow(/thinkMs: expected at least 0/);
  });
});
