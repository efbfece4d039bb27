/**
 * The docker-compose cluster stack: `docker-compose.yml`, `.env.example`, the `Dockerfile`, the configs
 * in `deploy/config/` and the scripts in `deploy/`. There is no Docker engine here, so nothing is
 * started: the file is checked as data (services, healthchecks, start order, ports, users, variables,
 * scrape targets, volumes against the paths the configs name), every config is loaded with the
 * project's own loader, the keys script runs for real, and when a `docker-compose` or `docker compose`
 * binary is on PATH the file goes through `config -q` too.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { loadTrustedGovernance } from '../approval-channels/core/directory.ts';
import { loadPublicKeys, loadSecretKey } from '../approval-channels/keys.ts';
import { loadApprovalsServiceConfig } from '../approval-channels/service-config.ts';
import { loadAggregatorConfig } from '../audit/service-config.ts';
import { loadObserverConfig } from '../observer/service-config.ts';
import { loadWorkerConfig } from '../worker/config.ts';

const ROOT = join(import.meta.dirname, '..');
const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8');

interface Service {
  readonly image?: string;
  readonly build?: { readonly context: string; readonly dockerfile: string };
  readonly user?: string;
  readonly restart?: string;
  readonly entrypoint?: readonly string[];
  readonly command?: readonly string[];
  readonly environment?: Readonly<Record<string, string>>;
  readonly ports?: readonly string[];
  readonly volumes?: readonly string[];
  readonly healthcheck?: { readonly test: readonly string[] };
  readonly depends_on?: Readonly<Record<string, { readonly condition: string }>>;
}
// `<<: *agent-runtime` merges the shared settings of our services, as docker-compose does
const compose = parseYaml(read('docker-compose.yml'), { merge: true }) as {
  readonly services: Readonly<Record<string, Service>>;
  readonly volumes: Readonly<Record<string, unknown>>;
};
const services = compose.services;
const service = (name: string): Service => {
  const found = services[name];
  if (found === undefined) throw new Error(`docker-compose.yml has no service ${name}`);
  return found;
};

/** The agent-runtime services (our image); the rest are upstream images. */
const OURS = [
  'keys',
  'temporal-search-attributes',
  'audit-aggregator',
  'observer',
  'approvals',
  'agents-worker',
  'tools-worker',
];
/** One-shot jobs: they run to completion once per `up`, so they have no healthcheck and no restart. */
const ONE_SHOT = ['temporal-schema', 'temporal-setup', 'temporal-search-attributes', 'keys'];

/** `${NAME}`, `${NAME:-default}`, `${NAME:?error}` (and the forms without `:`); `$${` is an escape. */
const INTERPOLATION = /(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?([-?])([^}]*))?\}/g;

/** Every interpolation in the string values of a parsed compose file (comments are not interpolated). */
function interpolations(value: unknown): { name: string; op: string | undefined }[] {
  if (typeof value === 'string')
    return [...value.matchAll(INTERPOLATION)].map((m) => ({ name: m[1]!, op: m[2] }));
  if (Array.isArray(value)) return value.flatMap(interpolations);
  if (value !== null && typeof value === 'object') return Object.values(value).flatMap(interpolations);
  return [];
}

/** What docker-compose substitutes, given the variables of an env file. */
function interpolate(text: string, env: ReadonlyMap<string, string>): string {
  return text.replace(INTERPOLATION, (_, name: string, op: string | undefined, arg: string | undefined) => {
    const value = env.get(name);
    if (value !== undefined && value !== '') return value;
    if (op === '?') throw new Error(`${name} is required: ${arg ?? ''}`);
    return op === '-' ? (arg ?? '') : '';
  });
}

/** `NAME=value` lines, and the `# NAME=…` lines that document an optional variable. */
function parseEnvFile(text: string): { set: Map<string, string>; commented: Set<string> } {
  const set = new Map<string, string>();
  const commented = new Set<string>();
  for (const line of text.split('\n')) {
    const active = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line);
    if (active) set.set(active[1]!, active[2]!);
    const documented = /^#\s*([A-Z_][A-Z0-9_]*)=/.exec(line);
    if (documented) commented.add(documented[1]!);
  }
  return { set, commented };
}
const envExample = parseEnvFile(read('.env.example'));
const env: NodeJS.ProcessEnv = Object.fromEntries(envExample.set);

/** The `--config` file a service runs, as a path in this checkout (the image has the repo at /app). */
function configOf(name: string): string {
  const command = service(name).command ?? [];
  const file = command[command.indexOf('--config') + 1];
  if (!command.includes('--config') || file === undefined) throw new Error(`${name} runs no --config`);
  expect(file).toMatch(/^\/app\/deploy\/config\/[a-z-]+\.yaml$/);
  return join(ROOT, file.slice('/app/'.length));
}

/** Named-volume mounts `volume:/target[:ro]` of a service. */
function mounts(name: string): { volume: string; target: string; readOnly: boolean }[] {
  return (service(name).volumes ?? [])
    .filter((v) => !v.startsWith('./'))
    .map((v) => {
      const [volume = '', target = '', mode] = v.split(':');
      return { volume, target, readOnly: mode === 'ro' };
    });
}

/** Strings of a value that are absolute container paths outside the image (`/keys/…`, `/data/…`). */
function containerPaths(value: unknown): string[] {
  if (typeof value === 'string') return /^\/(keys|data)\//.test(value) ? [value] : [];
  if (Array.isArray(value)) return value.flatMap(containerPaths);
  if (value !== null && typeof value === 'object') return Object.values(value).flatMap(containerPaths);
  return [];
}

/** The same value with the container paths moved under `root` (to load a config on this machine). */
function underRoot<T>(value: T, root: string): T {
  if (typeof value === 'string') return (/^\/(keys|data)\//.test(value) ? join(root, value) : value) as T;
  if (Array.isArray(value)) return value.map((v: unknown) => underRoot(v, root)) as T;
  if (value !== null && typeof value === 'object')
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, underRoot(v, root)])) as T;
  return value;
}

const scratch = mkdtempSync(join(tmpdir(), 'agent-runtime-compose-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Runs deploy/config/init-keys.sh with the keys under `root` and this checkout's CLI. */
function initKeys(root: string): { status: number | null; output: string } {
  const run = spawnSync('sh', [join(ROOT, 'deploy', 'config', 'init-keys.sh')], {
    env: {
      ...process.env,
      KEYS_DIR: root,
      AGENT_RUNTIME_CLI: `${process.execPath} ${join(ROOT, 'cli', 'bin.ts')}`,
    },
    encoding: 'utf8',
  });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

describe('docker-compose.yml', () => {
  it('runs the whole stack', () => {
    expect(Object.keys(services).sort()).toEqual(
      [
        'postgres',
        'temporal-schema',
        'temporal',
        'temporal-setup',
        'temporal-search-attributes',
        'temporal-ui',
        'keys',
        'audit-aggregator',
        'observer',
        'approvals',
        'agents-worker',
        'tools-worker',
        'mailpit',
        'prometheus',
        'grafana',
      ].sort(),
    );
  });

  it('pins every upstream image and uses temporalio/server, not the deprecated auto-setup', () => {
    const images = Object.fromEntries(
      Object.entries(services)
        .filter(([name]) => !OURS.includes(name))
        .map(([name, s]) => [name, s.image]),
    );
    expect(images).toEqual({
      postgres: 'postgres:17',
      'temporal-schema': 'temporalio/admin-tools:1.30.6',
      temporal: 'temporalio/server:1.30.6',
      'temporal-setup': 'temporalio/admin-tools:1.30.6',
      'temporal-ui': 'temporalio/ui:2.49.1',
      mailpit: 'axllent/mailpit:v1.31.1',
      prometheus: 'prom/prometheus:v3.5.0',
      grafana: 'grafana/grafana:12.1.1',
    });
    for (const s of Object.values(services)) expect(s.image ?? '').not.toMatch(/auto-setup|:latest$/);
  });

  it('gives every long-running service a healthcheck and a restart policy; one-shots neither', () => {
    for (const [name, s] of Object.entries(services)) {
      if (ONE_SHOT.includes(name)) {
        expect({ name, restart: s.restart, healthcheck: s.healthcheck }).toEqual({
          name,
          restart: 'no',
          healthcheck: undefined,
        });
      } else {
        expect({ name, restart: s.restart }).toEqual({ name, restart: 'unless-stopped' });
        expect(s.healthcheck?.test[0], name).toBe('CMD');
        expect(s.healthcheck?.test.length, name).toBeGreaterThan(1);
      }
    }
  });

  it('orders the start with depends_on conditions', () => {
    const conditions = Object.fromEntries(
      Object.entries(services).map(([name, s]) => [
        name,
        Object.fromEntries(Object.entries(s.depends_on ?? {}).map(([dep, d]) => [dep, d.condition])),
      ]),
    );
    const healthy = 'service_healthy';
    const done = 'service_completed_successfully';
    expect(conditions).toEqual({
      postgres: {},
      'temporal-schema': { postgres: healthy },
      temporal: { 'temporal-schema': done },
      'temporal-setup': { temporal: healthy },
      'temporal-search-attributes': { 'temporal-setup': done },
      'temporal-ui': { temporal: healthy },
      keys: {},
      'audit-aggregator': { postgres: healthy, keys: done },
      observer: { keys: done, 'audit-aggregator': healthy, 'temporal-search-attributes': done },
      approvals: {
        postgres: healthy,
        keys: done,
        'audit-aggregator': healthy,
        mailpit: healthy,
        'temporal-search-attributes': done,
      },
      'agents-worker': { 'audit-aggregator': healthy, 'temporal-search-attributes': done },
      'tools-worker': { keys: done, 'audit-aggregator': healthy, 'temporal-search-attributes': done },
      mailpit: {},
      prometheus: {},
      grafana: { prometheus: healthy },
    });
    // a condition can only be met by a service of the matching kind
    for (const deps of Object.values(conditions))
      for (const [dep, condition] of Object.entries(deps))
        expect({ dep, oneShot: ONE_SHOT.includes(dep) }).toEqual({ dep, oneShot: condition === done });
  });

  it('publishes the user-facing ports on BIND_ADDRESS (this machine by default) and nothing else', () => {
    const published = Object.fromEntries(
      Object.entries(services)
        .filter(([, s]) => s.ports !== undefined)
        .map(([name, s]) => [name, (s.ports ?? []).map((p) => interpolate(p, envExample.set))]),
    );
    expect(published).toEqual({
      temporal: ['127.0.0.1:7233:7233'],
      'temporal-ui': ['127.0.0.1:8080:8080'],
      'audit-aggregator': ['127.0.0.1:9466:9466'],
      approvals: ['127.0.0.1:8288:8288'],
      mailpit: ['127.0.0.1:8025:8025'],
      prometheus: ['127.0.0.1:9090:9090'],
      grafana: ['127.0.0.1:3000:3000'],
    });
    for (const s of Object.values(services))
      for (const port of s.ports ?? [])
        expect(port).toMatch(/^\$\{BIND_ADDRESS:-127\.0\.0\.1\}:\$\{[A-Z_]+:-\d+\}:\d+$/);
    // without an env file the defaults are the same loopback ports
    expect(interpolate(service('approvals').ports?.[0] ?? '', new Map())).toBe('127.0.0.1:8288:8288');
  });

  it('keeps the Temporal Web UI read-only: every write action is disabled', () => {
    const environment = service('temporal-ui').environment ?? {};
    const disabled = Object.fromEntries(Object.entries(environment).filter(([key]) => /DISABLE/.test(key)));
    expect(disabled).toEqual({
      TEMPORAL_DISABLE_WRITE_ACTIONS: 'true',
      TEMPORAL_WORKFLOW_TERMINATE_DISABLED: 'true',
      TEMPORAL_WORKFLOW_CANCEL_DISABLED: 'true',
      TEMPORAL_WORKFLOW_SIGNAL_DISABLED: 'true',
      TEMPORAL_WORKFLOW_UPDATE_DISABLED: 'true',
      TEMPORAL_WORKFLOW_RESET_DISABLED: 'true',
      TEMPORAL_BATCH_ACTIONS_DISABLED: 'true',
      TEMPORAL_START_WORKFLOW_DISABLED: 'true',
      TEMPORAL_ACTIVITY_COMMANDS_DISABLED: 'true',
    });
    expect(environment.TEMPORAL_ADDRESS).toBe('temporal:7233');
  });

  it('configures temporalio/server for PostgreSQL and Prometheus, with the schema from admin-tools', () => {
    expect(service('temporal').environment).toMatchObject({
      DB: 'postgres12',
      POSTGRES_SEEDS: 'postgres',
      POSTGRES_USER: 'temporal',
      DBNAME: 'temporal',
      VISIBILITY_DBNAME: 'temporal_visibility',
      PROMETHEUS_ENDPOINT: '0.0.0.0:8000',
      DYNAMIC_CONFIG_FILE_PATH: '/etc/temporal/config/dynamicconfig/agent-runtime.yaml',
    });
    expect(service('temporal').volumes).toContain(
      './deploy/temporal/dynamicconfig.yaml:/etc/temporal/config/dynamicconfig/agent-runtime.yaml:ro',
    );
    const schema = read('deploy/temporal/setup-schema.sh');
    for (const step of ['create-database', 'setup-schema -v 0.0', 'update-schema -d "$dir"'])
      expect(schema).toContain(step);
    expect(schema).toContain('--plugin postgres12');
    expect(schema).toContain('/etc/temporal/schema/postgresql/v12');
    expect(schema).toMatch(/temporal:temporal temporal_visibility:visibility/);
    const init = read('deploy/postgres/init-databases.sh');
    for (const db of ['temporal', 'temporal_visibility', 'agent_runtime'])
      expect(init).toContain(`CREATE DATABASE ${db} OWNER`);
    expect(read('deploy/temporal/setup-namespace.sh')).toContain('temporal operator namespace create');
    expect(service('temporal-search-attributes').command?.join(' ')).toContain(
      'node /app/bin/agent-runtime.js temporal search-attributes --address temporal:7233 --namespace default',
    );
    expect(parseYaml(read('deploy/temporal/dynamicconfig.yaml'))).toEqual({
      'frontend.enableUpdateWorkflowExecution': [{ value: true }],
      'frontend.enableUpdateWorkflowExecutionAsyncAccepted': [{ value: true }],
    });
  });

  it('builds the agent-runtime services from the Dockerfile and runs them as a numeric non-root user', () => {
    const dockerfile = read('Dockerfile');
    const user = /^USER (\d+):(\d+)$/m.exec(dockerfile);
    expect(user?.[1]).toBeDefined();
    expect(Number(user?.[1])).toBeGreaterThan(0);
    for (const name of OURS) {
      const s = service(name);
      expect({ name, build: s.build, image: s.image, user: s.user }).toEqual({
        name,
        build: { context: '.', dockerfile: 'Dockerfile' },
        image: 'agent-runtime:local',
        user: `${user?.[1]}:${user?.[2]}`,
      });
    }
    // multi-stage: build with dev dependencies, run on Node 24 slim with only what the runtime needs
    expect([...dockerfile.matchAll(/^FROM (\S+)(?: AS (\w+))?$/gm)].map((m) => m[2])).toEqual([
      'build',
      'runtime',
    ]);
    expect(dockerfile).toMatch(/^ARG NODE_IMAGE=node:24-[a-z]+-slim$/m);
    expect(dockerfile).toContain('RUN npm ci ');
    expect(dockerfile).toContain('npm run build');
    expect(dockerfile).toContain('npm prune --omit=dev');
    const runtime = dockerfile.slice(dockerfile.indexOf(' AS runtime'));
    expect([...runtime.matchAll(/^COPY (?:--from=build )?(.+) \.\/?\S*$/gm)].map((m) => m[1])).toEqual([
      '/app/package.json /app/package-lock.json',
      '/app/node_modules',
      '/app/dist',
      'bin',
      'examples',
      'deploy/config',
    ]);
    expect(dockerfile).toContain('ENTRYPOINT ["node", "/app/bin/agent-runtime.js"]');
    expect(dockerfile).not.toMatch(/^HEALTHCHECK/m);
    expect(read('.dockerignore').split('\n')).toEqual(
      expect.arrayContaining(['node_modules', 'dist', '.git', '.tools', '.agent-runtime', '.env', '.env.*']),
    );
  });

  it('takes every ${VAR} from .env.example: required ones set there, optional ones at least documented', () => {
    const used = interpolations(compose);
    const required = new Set(used.filter((u) => u.op !== '-').map((u) => u.name));
    const optional = new Set(used.filter((u) => u.op === '-').map((u) => u.name));
    const missing = [...required].filter((name) => !envExample.set.has(name));
    const undocumented = [...optional].filter((n) => !envExample.set.has(n) && !envExample.commented.has(n));
    expect({ missing, undocumented }).toEqual({ missing: [], undocumented: [] });
    // secrets have no default: a forgotten .env is an error, not a stack with example passwords
    for (const name of required)
      expect(used.filter((u) => u.name === name && u.op === '?').length).toBeGreaterThan(0);
    expect([...required].filter((n) => /PASSWORD|TOKEN/.test(n)).sort()).toEqual([
      'AGENT_RUNTIME_AUDIT_APPROVALS_TOKEN',
      'AGENT_RUNTIME_AUDIT_OBSERVER_TOKEN',
      'AGENT_RUNTIME_AUDIT_READER_TOKEN',
      'AGENT_RUNTIME_AUDIT_WORKERS_TOKEN',
      'AGENT_RUNTIME_DB_PASSWORD',
      'GRAFANA_ADMIN_PASSWORD',
      'POSTGRES_PASSWORD',
      'TEMPORAL_DB_PASSWORD',
    ]);
    // and .env.example lists nothing the stack does not read
    const names = new Set(used.map((u) => u.name));
    expect([...envExample.set.keys(), ...envExample.commented].filter((n) => !names.has(n))).toEqual([]);
    expect([...envExample.commented].filter((n) => n.startsWith('SLACK_')).length).toBe(6);
  });

  it('hands each secret only to the services that use it', () => {
    const holders = (variable: string) =>
      Object.entries(services)
        .filter(([, s]) => Object.values(s.environment ?? {}).some((v) => v.includes(`\${${variable}:`)))
        .map(([name]) => name)
        .sort();
    expect(holders('AGENT_RUNTIME_AUDIT_WORKERS_TOKEN')).toEqual([
      'agents-worker',
      'audit-aggregator',
      'tools-worker',
    ]);
    expect(holders('AGENT_RUNTIME_AUDIT_APPROVALS_TOKEN')).toEqual(['approvals', 'audit-aggregator']);
    expect(holders('AGENT_RUNTIME_AUDIT_OBSERVER_TOKEN')).toEqual(['audit-aggregator', 'observer']);
    expect(holders('AGENT_RUNTIME_AUDIT_READER_TOKEN')).toEqual(['audit-aggregator']);
    expect(holders('AGENT_RUNTIME_DB_PASSWORD')).toEqual(['approvals', 'audit-aggregator', 'postgres']);
    expect(holders('TEMPORAL_DB_PASSWORD')).toEqual(['postgres', 'temporal', 'temporal-schema']);
    expect(holders('SLACK_BOT_TOKEN')).toEqual(['approvals']);
    // and each secret key volume only to its holder (plus the keys job that writes it)
    const holding = (volume: string) =>
      Object.keys(services)
        .filter((name) => mounts(name).some((m) => m.volume === volume))
        .sort();
    expect(holding('vote-key')).toEqual(['approvals', 'keys']);
    expect(holding('audit-key')).toEqual(['audit-aggregator', 'keys']);
    expect(holding('governance-key')).toEqual(['keys']);
    expect(holding('public-keys')).toEqual(['keys', 'observer', 'tools-worker']);
    for (const name of ['approvals', 'audit-aggregator', 'observer', 'tools-worker'])
      for (const m of mounts(name).filter((m) => m.target.startsWith('/keys/')))
        expect(m.readOnly).toBe(true);
  });

  it('has Prometheus scrape each compose service on the port its config serves /metrics on', () => {
    const prometheus = parseYaml(read('deploy/prometheus/prometheus.yml')) as {
      scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
    };
    const targets = prometheus.scrape_configs.flatMap((j) => j.static_configs.flatMap((s) => s.targets));
    expect(targets.length).toBe(6);
    for (const target of targets) {
      const [host = '', port] = target.split(':');
      expect(Object.keys(services)).toContain(host);
      let served: string;
      if (host === 'temporal')
        served = String(service(host).environment?.PROMETHEUS_ENDPOINT).split(':')[1] ?? '';
      else {
        const config = parseYaml(readFileSync(configOf(host), 'utf8')) as {
          metrics?: { port: number };
          listen?: { port: number }; // the aggregator serves /metrics on its API port
        };
        served = String(config.metrics?.port ?? config.listen?.port);
      }
      expect({ target, served }).toEqual({ target, served: port });
    }
  });

  it('probes and publishes each agent-runtime service on a port its config binds', () => {
    for (const name of OURS.filter((n) => !ONE_SHOT.includes(n))) {
      const config = parseYaml(readFileSync(configOf(name), 'utf8')) as {
        listen?: { port: number };
        http?: { port: number };
        metrics?: { port: number };
      };
      const bound = [config.listen?.port, config.http?.port, config.metrics?.port].filter(
        (p) => p !== undefined,
      );
      const probed = /^http:\/\/127\.0\.0\.1:(\d+)\/healthz$/.exec(
        service(name).environment?.HEALTHCHECK_URL ?? '',
      );
      expect({ name, probed: bound.includes(Number(probed?.[1])) }).toEqual({ name, probed: true });
      for (const port of service(name).ports ?? [])
        expect({ name, port, bound: bound.includes(Number(port.split(':').at(-1))) }).toEqual({
          name,
          port,
          bound: true,
        });
    }
  });

  it('mounts a volume under every /keys and /data path the configs name, writable only where written', async () => {
    const configs: Record<string, unknown> = {
      'audit-aggregator': await loadAggregatorConfig(configOf('audit-aggregator'), env),
      observer: await loadObserverConfig(configOf('observer')),
      approvals: await loadApprovalsServiceConfig(configOf('approvals')),
      'agents-worker': parseYaml(readFileSync(configOf('agents-worker'), 'utf8')),
      'tools-worker': parseYaml(readFileSync(configOf('tools-worker'), 'utf8')),
    };
    const found: Record<string, string[]> = {};
    for (const [name, config] of Object.entries(configs)) {
      found[name] = containerPaths(config);
      for (const path of found[name]) {
        const mount = mounts(name).find((m) => path === m.target || path.startsWith(`${m.target}/`));
        expect({ name, path, mounted: mount !== undefined }).toEqual({ name, path, mounted: true });
        expect({ name, path, readOnly: mount?.readOnly }).toEqual({
          name,
          path,
          readOnly: path.startsWith('/keys/'),
        });
      }
    }
    expect(found).toEqual({
      'audit-aggregator': ['/keys/audit/vote-signing.key'],
      observer: ['/data/observer/observer.db', '/keys/public/governance.pub'],
      approvals: ['/keys/votes/vote-signing.key'],
      'agents-worker': [],
      'tools-worker': ['/data/workspace', '/data/state', '/keys/public/votes.pub'],
    });
    for (const volume of new Set(Object.keys(services).flatMap((n) => mounts(n).map((m) => m.volume))))
      expect(Object.keys(compose.volumes)).toContain(volume);
    // the image owns those mount points, so empty named volumes start out writable by its user
    const dockerfile = read('Dockerfile');
    for (const target of new Set(OURS.flatMap((n) => mounts(n).map((m) => m.target))))
      expect(dockerfile).toContain(target);
  });

  it('mounts Grafana dashboards where the provisioning file looks for them', () => {
    const provider = parseYaml(read('deploy/grafana/provisioning/dashboards/agent-runtime.yaml')) as {
      providers: { options: { path: string } }[];
    };
    expect(service('grafana').volumes).toEqual(
      expect.arrayContaining([
        './deploy/grafana/provisioning:/etc/grafana/provisioning:ro',
        `./deploy/grafana/dashboards:${provider.providers[0]?.options.path}:ro`,
      ]),
    );
    expect(service('grafana').environment).toMatchObject({
      GF_AUTH_ANONYMOUS_ENABLED: 'true',
      GF_AUTH_ANONYMOUS_ORG_ROLE: 'Viewer',
    });
    expect(service('prometheus').volumes).toContain(
      './deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro',
    );
    for (const s of Object.values(services))
      for (const bind of (s.volumes ?? []).filter((v) => v.startsWith('./')))
        expect({ bind, exists: existsSync(join(ROOT, bind.split(':')[0] ?? '')) }).toEqual({
          bind,
          exists: true,
        });
  });
});

describe('deploy/config', () => {
  it('loads the aggregator config with loadAggregatorConfig and the .env.example tokens', async () => {
    const config = await loadAggregatorConfig(configOf('audit-aggregator'), env);
    expect(config.listen).toEqual({ host: '0.0.0.0', port: 9466 });
    expect(config.store).toMatchObject({
      kind: 'postgres',
      connectionString: 'postgres://agent_runtime@postgres:5432/agent_runtime',
      schema: 'agent_runtime_audit',
    });
    expect(config.tokens.map((t) => [t.name, t.sources])).toEqual([
      ['workers', ['workflow', 'guard', 'model']],
      ['approvals', ['approvals']],
      ['observer', ['observer']],
      ['reader', []],
    ]);
  });

  it('refuses to start the aggregator when a token is missing from the environment', async () => {
    const { AGENT_RUNTIME_AUDIT_READER_TOKEN: _, ...without } = env;
    await expect(loadAggregatorConfig(configOf('audit-aggregator'), without)).rejects.toThrow(
      /aggregator\.yaml:\d+: invalid audit aggregator configuration: tokens\[3\]\.tokenEnv: \$AGENT_RUNTIME_AUDIT_READER_TOKEN is not set/,
    );
  });

  it('loads the observer config with loadObserverConfig', async () => {
    const config = await loadObserverConfig(configOf('observer'));
    expect(config).toMatchObject({
      aggregator: { url: 'http://audit-aggregator:9466', tokenEnv: 'AGENT_RUNTIME_AUDIT_OBSERVER_TOKEN' },
      temporal: { address: 'temporal:7233', namespace: 'default' },
      metrics: { host: '0.0.0.0', port: 9467 },
      rules: { builtin: true, enforce: true },
    });
    expect(env[config.aggregator.tokenEnv]).toBeDefined();
  });

  it('loads the approvals config with loadApprovalsServiceConfig, and the governance it trusts', async () => {
    const config = await loadApprovalsServiceConfig(configOf('approvals'));
    expect(config).toMatchObject({
      temporal: { address: 'temporal:7233', namespace: 'default', taskQueue: 'approvals' },
      http: { host: '0.0.0.0', port: 8288, publicBaseUrl: 'http://localhost:8288' },
      store: { kind: 'postgres', schema: 'agent_runtime_approvals' },
      aggregator: { url: 'http://audit-aggregator:9466', tokenEnv: 'AGENT_RUNTIME_AUDIT_APPROVALS_TOKEN' },
      metrics: { host: '0.0.0.0', port: 9465 },
      email: { smtp: { host: 'mailpit', port: 1025, ignoreTLS: true } },
    });
    // ../../examples resolves the same in this checkout and in the image (/app/deploy/config)
    expect(config.governance).toEqual([join(ROOT, 'examples', 'ops-staging', 'governance.yaml')]);
    expect((await loadTrustedGovernance(config.governance)).versions().map((v) => v.agentId)).toEqual([
      'ops-assistant',
    ]);
    expect(env[config.aggregator?.tokenEnv ?? '']).toBeDefined();
  });

  it('gives the worker configs the worker contract shape', () => {
    const shape = (file: string) => {
      const config = parseYaml(read(`deploy/config/${file}`)) as Record<string, Record<string, unknown>>;
      return Object.fromEntries(
        Object.entries(config).map(([key, value]) => [
          key,
          value !== null && typeof value === 'object' && !Array.isArray(value)
            ? Object.keys(value)
            : typeof value,
        ]),
      );
    };
    const common = {
      temporal: ['address', 'namespace', 'taskQueue'],
      audit: ['url', 'tokenEnv'],
      metrics: ['host', 'port', 'temporalBindAddress'],
    };
    expect(shape('agents-worker.yaml')).toEqual({
      role: 'string',
      ...common,
      observerLease: ['name', 'pollMs'],
    });
    expect(shape('tools-worker.yaml')).toEqual({
      role: 'string',
      ...common,
      tools: ['workspace', 'stateDir', 'http'],
      trustedKeys: 'object',
    });
  });

  it('writes the keys where the configs expect them, once, with init-keys.sh', async () => {
    const root = join(scratch, 'keys');
    const first = initKeys(root);
    expect(first).toMatchObject({ status: 0 });
    const mode = (path: string) => (statSync(join(root, path)).mode & 0o777).toString(8);
    expect(
      ['votes', 'audit', 'governance'].map((dir) => [mode(dir), mode(`${dir}/vote-signing.key`)]),
    ).toEqual([
      ['700', '600'],
      ['700', '600'],
      ['700', '600'],
    ]);
    const ids = async () => [
      (await loadSecretKey(join(root, 'votes', 'vote-signing.key'))).keyId,
      (await loadSecretKey(join(root, 'audit', 'vote-signing.key'))).keyId,
      (await loadSecretKey(join(root, 'governance', 'vote-signing.key'))).keyId,
    ];
    const before = await ids();
    const published = await loadPublicKeys(
      ['votes', 'audit-checkpoint', 'governance'].map((n) => join(root, 'public', `${n}.pub`)),
    );
    expect([...published.keys()]).toEqual(before);
    // a second run (every `up`) keeps the keys: old votes and checkpoints keep verifying
    const second = initKeys(root);
    expect(second.status).toBe(0);
    expect(second.output.match(/keeping the key in/g)?.length).toBe(3);
    expect(await ids()).toEqual(before);
  });

  it('loads the worker configs with loadWorkerConfig (container paths moved under a temp dir)', async () => {
    const root = join(scratch, 'workers');
    expect(initKeys(join(root, 'keys')).status).toBe(0);
    mkdirSync(join(root, 'data', 'workspace'), { recursive: true });
    const load = async (name: string) => {
      const file = join(root, 'deploy', 'config', `${name}.yaml`);
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, JSON.stringify(underRoot(parseYaml(readFileSync(configOf(name), 'utf8')), root)));
      return loadWorkerConfig(file, env);
    };
    expect(await load('agents-worker')).toMatchObject({
      role: 'agents',
      temporal: { address: 'temporal:7233', namespace: 'default', taskQueue: 'agents' },
      audit: { url: 'http://audit-aggregator:9466', tokenEnv: 'AGENT_RUNTIME_AUDIT_WORKERS_TOKEN' },
      metrics: { host: '0.0.0.0', port: 9464 },
      observerLease: { name: 'observer', pollMs: 1000 },
    });
    expect(await load('tools-worker')).toMatchObject({
      role: 'tools',
      temporal: { taskQueue: 'tools' },
      tools: { workspace: join(root, 'data', 'workspace'), stateDir: join(root, 'data', 'state') },
      trustedKeys: [join(root, 'keys', 'public', 'votes.pub')],
    });
    // the workers' token is the one .env.example sets, and without it the worker refuses to start
    const { AGENT_RUNTIME_AUDIT_WORKERS_TOKEN: _, ...without } = env;
    await expect(
      loadWorkerConfig(join(root, 'deploy', 'config', 'tools-worker.yaml'), without),
    ).rejects.toThrow('audit.tokenEnv: $AGENT_RUNTIME_AUDIT_WORKERS_TOKEN is not set');
  });
});

/** `docker-compose` (v1, Debian's package) or the `docker compose` plugin, whichever answers. */
function composeBinary(): readonly string[] | undefined {
  for (const command of [['docker-compose'], ['docker', 'compose']]) {
    const probe = spawnSync(command[0]!, [...command.slice(1), 'version'], { encoding: 'utf8' });
    if (probe.status === 0) return command;
  }
  return undefined;
}
const binary = composeBinary();

/** Runs `<binary> -f docker-compose.yml --env-file <file> config -q` with none of the developer's variables. */
function composeConfig(envFile: string): { status: number | null; stderr: string } {
  if (binary === undefined)
    throw new Error(
      'docker-compose (or docker compose) is not on PATH: .ci/run installs it; CI never skips this',
    );
  const [command, ...args] = binary;
  const run = spawnSync(
    command!,
    [...args, '-f', 'docker-compose.yml', '--env-file', envFile, 'config', '-q'],
    {
      cwd: ROOT,
      env: { PATH: process.env.PATH, HOME: process.env.HOME },
      encoding: 'utf8',
    },
  );
  return { status: run.status, stderr: run.stderr };
}

describe('docker-compose config', () => {
  const skipped = 'SKIPPED: neither docker-compose nor docker compose is on PATH, so `config -q` was not run';
  // a developer's machine may lack the binary; in CI (CI=true, as .ci/run sets) a missing one fails
  const skip = binary === undefined && process.env.CI !== 'true';
  it.skipIf(skip)(
    skip
      ? skipped
      : `accepts the file: ${(binary ?? ['docker-compose']).join(' ')} -f docker-compose.yml --env-file .env.example config -q`,
    () => {
      expect(composeConfig('.env.example')).toMatchObject({ status: 0 });
    },
  );

  it.skipIf(skip)(skip ? skipped : 'refuses an env file without a secret, naming it', () => {
    const partial = join(scratch, 'partial.env');
    writeFileSync(partial, read('.env.example').replace(/^POSTGRES_PASSWORD=.*$/m, ''));
    const run = composeConfig(partial);
    expect(run.status).not.toBe(0);
    expect(run.stderr).toContain('set POSTGRES_PASSWORD in .env');
  });
});
