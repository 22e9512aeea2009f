#!/usr/bin/env node
// A foreign client of the mechanism protocol: JavaScript on vscode-jsonrpc (the JSON-RPC
// library behind VS Code's language clients), sharing no code with the Rust workspace. It
// spawns a mechanism server, speaks LSP `Content-Length` framing to it over the child's stdio,
// and drives describe, plan and status plus one unknown method.
//
// Usage:
//   node client.mjs --patch sha256:HEX --params JSON [--timeout-ms N] -- SERVER [ARGS...]
//
// On success it prints ONE JSON object on stdout: what it received (describe, plan and status
// results, the unknown method's error, any notifications, the server's exit code) and exits 0.
// On any failure it explains on stderr and exits 1. It checks the transport, not the content:
// the Rust test (tests/tests/e2e/foreign_client.rs) judges the content with our own code.

import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import {
  createMessageConnection,
  ParameterStructures,
  ResponseError,
  StreamMessageReader,
  StreamMessageWriter,
} from 'vscode-jsonrpc/node';

const USAGE =
  'usage: node client.mjs --patch sha256:HEX --params JSON [--timeout-ms N] -- SERVER [ARGS...]';

/** What was received so far; printed on stdout at the end, or on stderr with a failure. */
const received = {};

/** Anything the server sent that no request asked for: stray replies, unknown notifications. */
const unexpected = [];

/** The server process, and how it ended once it has. */
let child;
let serverExit;
let exited;

function fail(message) {
  process.stderr.write(`foreign client: ${message}\n`);
  if (serverExit) {
    process.stderr.write(
      `foreign client: the server had exited (code ${serverExit.code}, signal ${serverExit.signal})\n`,
    );
  } else if (child) {
    // Closing our end of its stdin ends a well-behaved server; a hung one is killed.
    child.kill('SIGKILL');
  }
  process.stderr.write(`foreign client: received so far: ${JSON.stringify(received)}\n`);
  process.exit(1);
}

function parseCommandLine() {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        patch: { type: 'string' },
        params: { type: 'string' },
        'timeout-ms': { type: 'string', default: '60000' },
      },
      allowPositionals: true,
    });
  } catch (e) {
    fail(`${e.message}\n${USAGE}`);
  }
  const { values, positionals } = parsed;
  if (!values.patch || !values.params || positionals.length === 0) {
    fail(USAGE);
  }
  let params;
  try {
    params = JSON.parse(values.params);
  } catch (e) {
    fail(`--params is not JSON: ${e.message}`);
  }
  const timeoutMs = Number(values['timeout-ms']);
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) {
    fail(`--timeout-ms must be a positive integer, got ${values['timeout-ms']}`);
  }
  return { patch: values.patch, params, timeoutMs, command: positionals };
}

/** A request that must succeed; its result is recorded under `name`. */
async function call(connection, name, method, params) {
  try {
    const result = await connection.sendRequest(method, ParameterStructures.byName, params);
    received[name] = result;
    return result;
  } catch (e) {
    await serverGone();
    fail(`${method} failed: ${describeError(e)}`);
  }
}

/** A request that must fail; its error object is recorded under `name`. */
async function callExpectingError(connection, name, method, params) {
  let result;
  try {
    result = await connection.sendRequest(method, ParameterStructures.byName, params);
  } catch (e) {
    if (!(e instanceof ResponseError)) {
      await serverGone();
      fail(`${method} failed without a JSON-RPC error: ${describeError(e)}`);
    }
    received[name] = { code: e.code, message: e.message, data: e.data ?? null };
    return;
  }
  fail(`${method} was expected to fail but returned ${JSON.stringify(result)}`);
}

/** Gives a server that broke the pipe a moment to exit, so a failure can say how it ended. */
async function serverGone() {
  await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 500))]);
}

function describeError(e) {
  if (e instanceof ResponseError) {
    return JSON.stringify({ code: e.code, message: e.message, data: e.data });
  }
  return e && e.stack ? e.stack : String(e);
}

async function main() {
  const { patch, params, timeoutMs, command } = parseCommandLine();
  // A hung server must fail the test, not hang it.
  const timer = setTimeout(() => fail(`no answer within ${timeoutMs} ms`), timeoutMs);

  // stderr is inherited so the server's logs land in ours, where the test prints them.
  child = spawn(command[0], command.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] });
  exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      serverExit = { code, signal };
      resolve(serverExit);
    });
  });
  let finishing = false;
  child.on('error', (e) => fail(`cannot run ${command[0]}: ${e.message}`));
  child.on('exit', (code, signal) => {
    if (!finishing) {
      fail(`the server exited early (code ${code}, signal ${signal})`);
    }
  });

  // vscode-jsonrpc reports stray messages (a reply with a null id, one to no pending request)
  // only through its logger, so the logger is where they are caught.
  const logger = {
    error: (message) => unexpected.push({ log: 'error', message }),
    warn: (message) => unexpected.push({ log: 'warn', message }),
    info: () => {},
    log: () => {},
  };
  const connection = createMessageConnection(
    new StreamMessageReader(child.stdout),
    new StreamMessageWriter(child.stdin),
    logger,
  );
  const notifications = [];
  connection.onUnhandledNotification((message) => notifications.push(message));
  connection.onError(([error]) => unexpected.push({ error: describeError(error) }));
  connection.listen();

  await call(connection, 'describe', 'describe', { protocol_versions: ['mechanism/0'] });
  // What an editor sends when a request it cancelled had already been answered: the server
  // must neither reply nor mind.
  await connection.sendNotification('$/cancelRequest', ParameterStructures.byName, {
    id: 4242,
  });
  const plan = await call(connection, 'plan', 'plan', {
    operation: 'apply',
    params,
    inputs: { patch },
  });
  if (typeof plan?.plan_hash !== 'string') {
    fail(`plan returned no plan_hash: ${JSON.stringify(plan)}`);
  }
  await call(connection, 'status', 'status', { plan_hash: plan.plan_hash });
  await callExpectingError(connection, 'unknown_method_error', 'no_such_method', {});

  // EOF on the server's stdin ends it; it must exit 0.
  finishing = true;
  connection.dispose();
  child.stdin.end();
  const { code, signal } = await exited;
  clearTimeout(timer);
  received.server_exit = { code, signal };
  received.notifications = notifications;
  received.unexpected = unexpected;
  if (code !== 0) {
    fail(`the server exited with code ${code}, signal ${signal}`);
  }
  if (unexpected.length > 0) {
    fail(`the server sent messages nobody asked for: ${JSON.stringify(unexpected)}`);
  }
  process.stdout.write(`${JSON.stringify(received)}\n`);
}

main().catch((e) => fail(describeError(e)));
