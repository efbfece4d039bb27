/**
 * A logger that writes prefixed lines to a CLI stream.
 * @module
 */
import type { TemporalToolsLogger } from '../worker/temporal/binary.ts';
import { println } from './io.ts';

/** Logger for long-running commands: info and warnings to `stream`, debug dropped unless verbose. */
export function streamLogger(stream: NodeJS.WritableStream, verbose = false): TemporalToolsLogger {
  return {
    info: (message) => println(stream, message),
    warn: (message) => println(stream, `warning: ${message}`),
    debug: (message) => {
      if (verbose) println(stream, message);
    },
  };
}
