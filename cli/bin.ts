/**
 * Process entry point of the `agent-runtime` command.
 * @module
 */
import { main } from './main.ts';

main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr }).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  },
);
