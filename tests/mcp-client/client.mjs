#!/usr/bin/env node
// An MCP client of `admission mcp` on the official TypeScript SDK (@modelcontextprotocol/sdk),
// sharing no code with the Rust workspace. It starts the server with the SDK's own stdio
// transport, initializes, then performs one request per line of its stdin and answers each with
// one line of JSON on stdout, so that a test can act between calls (approve a plan with the
// command line, say) and judge what came back with its own code.
//
// Usage:
//   node client.mjs -- SERVER [ARGS...]
//
// Requests (one JSON object per line):
//   {"op": "server"}                      -> {"server", "instructions", "capabilities", "elapsed_ms"}
//   {"op": "list_tools"}                  -> {"tools", "elapsed_ms"}
//   {"op": "call", "name", "arguments",
//    "cancel_on_progress"?: true}         -> {"result", "progress", "elapsed_ms"}
//                                         or {"error": {"name", "message", "code"}, "progress", ...}
// `cancel_on_progress` aborts the call when its first progress notification arrives, which
// sends MCP's `notifications/cancelled`. At the end of stdin the client closes the connection and
// exits 0; a failure to start or connect is explained on stderr with exit 1.

import { createInterface } from 'node:readline';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

const separator = process.argv.indexOf('--');
const [command, ...args] = separator < 0 ? [] : process.argv.slice(separator + 1);
if (!command) {
  process.stderr.write('usage: node client.mjs -- SERVER [ARGS...]\n');
  process.exit(1);
}

// The server's environment is the client's own (the SDK passes only a few variables unless
// told), so a test can set variables for it; its stderr goes to ours.
const transport = new StdioClientTransport({ command, args, env: process.env, stderr: 'inherit' });
const client = new Client({ name: 'mechanism-mcp-test-client', version: '0.0.0' });

try {
  await client.connect(transport);
} catch (error) {
  process.stderr.write(`mcp client: cannot connect: ${error.stack ?? error}\n`);
  process.exit(1);
}

function answer(value) {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

function errorOf(error) {
  return { name: error?.name, message: String(error?.message ?? error), code: error?.code };
}

async function perform(request) {
  const started = performance.now();
  const elapsed = () => Math.round((performance.now() - started) * 1000) / 1000;
  switch (request.op) {
    case 'server':
      return {
        server: client.getServerVersion(),
        instructions: client.getInstructions(),
        capabilities: client.getServerCapabilities(),
        elapsed_ms: elapsed(),
      };
    case 'list_tools': {
      const { tools } = await client.listTools();
      return { tools, elapsed_ms: elapsed() };
    }
    case 'call': {
      const progress = [];
      const abort = new AbortController();
      const options = {
        signal: abort.signal,
        timeout: 120_000,
        onprogress: (update) => {
          progress.push(update);
          if (request.cancel_on_progress) abort.abort('cancelled by the test client');
        },
      };
      try {
        const result = await client.callTool(
          { name: request.name, arguments: request.arguments ?? {} },
          undefined,
          options,
        );
        return { result, progress, elapsed_ms: elapsed() };
      } catch (error) {
        return { error: errorOf(error), progress, elapsed_ms: elapsed() };
      }
    }
    default:
      return { error: { name: 'UsageError', message: `unknown op ${JSON.stringify(request.op)}` } };
  }
}

// One request at a time, in order: each answer is written before the next line is read.
const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  let request;
  try {
    request = JSON.parse(line);
  } catch (error) {
    answer({ error: { name: 'UsageError', message: `not JSON: ${error.message}` } });
    continue;
  }
  answer(await perform(request));
}
await client.close();
