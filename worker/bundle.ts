/**
 * Bundles the workflows for the `agents` worker. Custom tools are decided on inside the workflow,
 * so their pure spec modules must be in the bundle: a generated entry module imports
 * `workflows/index` and registers each module's exported `toolSpecs` array at load.
 * @module
 */
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode } from '@temporalio/worker';
import type { WorkflowBundleWithSourceMap } from '@temporalio/worker';

const here = fileURLToPath(new URL('.', import.meta.url));
/** `.ts` from source (vitest, tsx), `.js` from `dist/`. */
const ext = extname(fileURLToPath(import.meta.url));
const workflowsDir = resolve(here, '..', 'workflows');

const QUIET = {
  log: () => {},
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: (message: string) => console.error(message),
};

const cache = new Map<string, Promise<WorkflowBundleWithSourceMap>>();

/**
 * The workflow bundle with the built-in tool specs plus those exported as `toolSpecs` by each of
 * `toolSpecModules` (absolute paths of pure modules: zod only, no Node built-ins). Cached per list.
 */
export function bundleAgentWorkflows(
  toolSpecModules: readonly string[] = [],
): Promise<WorkflowBundleWithSourceMap> {
  const modules = toolSpecModules.map((m) => resolve(m));
  const cacheKey = modules.join('\n');
  let bundle = cache.get(cacheKey);
  if (bundle === undefined) {
    bundle = build(modules);
    cache.set(cacheKey, bundle);
    bundle.catch(() => cache.delete(cacheKey));
  }
  return bundle;
}

async function build(modules: readonly string[]): Promise<WorkflowBundleWithSourceMap> {
  if (modules.length === 0)
    return bundleWorkflowCode({ workflowsPath: join(workflowsDir, `index${ext}`), logger: QUIET });
  const lines = [
    `export * from ${JSON.stringify(join(workflowsDir, `index${ext}`))};`,
    `import { registerToolSpecs } from ${JSON.stringify(join(workflowsDir, `tool-catalog${ext}`))};`,
    ...modules.map((m, i) => `import * as specs${i} from ${JSON.stringify(m)};`),
    ...modules.map(
      (m, i) =>
        `if (!Array.isArray(specs${i}.toolSpecs)) throw new Error(${JSON.stringify(`${m} does not export a toolSpecs array`)});\nregisterToolSpecs(specs${i}.toolSpecs);`,
    ),
  ];
  const source = lines.join('\n') + '\n';
  // the entry lives outside the package, so point module resolution at the package's dependencies
  const sdkDir = dirname(createRequire(import.meta.url).resolve('@temporalio/workflow/package.json'));
  const nodeModules = resolve(sdkDir, '..', '..');
  const dir = join(tmpdir(), 'agent-runtime-bundles');
  await mkdir(dir, { recursive: true });
  const entry = join(
    dir,
    `entry-${createHash('sha256').update(source).digest('hex').slice(0, 16)}${ext === '.ts' ? '.ts' : '.js'}`,
  );
  await writeFile(entry, source);
  return bundleWorkflowCode({
    workflowsPath: entry,
    logger: QUIET,
    webpackConfigHook: (config) => ({
      ...config,
      resolve: {
        ...config.resolve,
        modules: [...(config.resolve?.modules ?? ['node_modules']), nodeModules],
      },
    }),
  });
}
