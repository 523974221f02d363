// Preloaded into the conformance CLI with `node --import ./preload.mjs` (see ./run).
//
// 1. Bearer: `conformance server` has no header option, so every request it makes gets
//    `Authorization: Bearer $PORTCULLIS_CONFORMANCE_TOKEN`. Most scenarios use
//    `globalThis.fetch` (the MCP SDK transport and the raw SSE probes), but
//    `dns-rebinding-protection` posts with `undici.request`, so that is wrapped too: otherwise
//    its requests would stop at the gateway's 401 and never reach the Host/Origin check.
//
// 2. Tool names (only when PORTCULLIS_CONFORMANCE_TOOL_PREFIX is set, e.g. "conformance___"):
//    the scenarios call fixed bare names (`test_simple_text`, ...) while the gateway exposes
//    `<target>___<tool>`, and the suite has no option for that. Like a client that knows which
//    target it talks to, this adds the prefix to the `name` of `tools/call` requests whose name
//    has no `___`, and removes it from tool names in `tools/list` results. Nothing else in the
//    messages is touched.
import { createRequire } from 'node:module';

const token = process.env.PORTCULLIS_CONFORMANCE_TOKEN;
if (!token) {
  console.error('preload: PORTCULLIS_CONFORMANCE_TOKEN is not set');
  process.exit(2);
}
const AUTH = `Bearer ${token}`;
const PREFIX = process.env.PORTCULLIS_CONFORMANCE_TOOL_PREFIX ?? '';
const SEP = '___';

// ---- message rewriting ------------------------------------------------------------------

function prefixCall(msg) {
  if (msg && msg.method === 'tools/call' && typeof msg.params?.name === 'string' && !msg.params.name.includes(SEP)) {
    return { ...msg, params: { ...msg.params, name: PREFIX + msg.params.name } };
  }
  return msg;
}

/** Returns [newBody, isToolsList] for a JSON-RPC request body (a string), or [body, false]. */
function rewriteRequestBody(body) {
  if (typeof body !== 'string') return [body, false];
  let msg;
  try {
    msg = JSON.parse(body);
  } catch {
    return [body, false];
  }
  const msgs = Array.isArray(msg) ? msg : [msg];
  const isList = msgs.some((m) => m && m.method === 'tools/list');
  const out = Array.isArray(msg) ? msg.map(prefixCall) : prefixCall(msg);
  return [JSON.stringify(out), isList];
}

function stripToolNames(msg) {
  const tools = msg?.result?.tools;
  if (Array.isArray(tools)) {
    for (const t of tools) {
      if (typeof t?.name === 'string' && t.name.startsWith(PREFIX)) t.name = t.name.slice(PREFIX.length);
    }
  }
  return msg;
}

/** Rewrites a tools/list response body, JSON or SSE (`data:` lines carry JSON-RPC messages). */
function rewriteListResponseText(text, contentType) {
  if (contentType.includes('text/event-stream')) {
    return text
      .split('\n')
      .map((line) => {
        if (!line.startsWith('data:')) return line;
        const data = line.slice(5).trim();
        if (!data) return line;
        try {
          return `data: ${JSON.stringify(stripToolNames(JSON.parse(data)))}`;
        } catch {
          return line;
        }
      })
      .join('\n');
  }
  try {
    const msg = JSON.parse(text);
    return JSON.stringify(Array.isArray(msg) ? msg.map(stripToolNames) : stripToolNames(msg));
  } catch {
    return text;
  }
}

// ---- globalThis.fetch ---------------------------------------------------------------------

const originalFetch = globalThis.fetch;
globalThis.fetch = async function fetchWithBearer(input, init = {}) {
  const headers = new Headers(init.headers ?? (input instanceof Request ? input.headers : undefined));
  if (!headers.has('authorization')) headers.set('authorization', AUTH);
  let body = init.body;
  let isList = false;
  if (PREFIX) [body, isList] = rewriteRequestBody(body);
  const response = await originalFetch(input, { ...init, headers, ...(body !== undefined && { body }) });
  if (!isList || !response.ok || !response.body) return response;
  const text = await response.text();
  const rewritten = rewriteListResponseText(text, response.headers.get('content-type') ?? '');
  const outHeaders = new Headers(response.headers);
  outHeaders.delete('content-length');
  outHeaders.delete('content-encoding');
  const out = new Response(rewritten, { status: response.status, statusText: response.statusText, headers: outHeaders });
  Object.defineProperty(out, 'url', { value: response.url });
  return out;
};

// ---- undici.request (the copy the conformance CLI imports) -------------------------------

// The CLI imports `{ request } from "undici"`; undici is CommonJS, so patching its exports
// object before the CLI's ESM graph links is what the CLI's named import then sees.
const cli = process.env.PORTCULLIS_CONFORMANCE_CLI;
if (cli) {
  const undici = createRequire(cli)('undici');
  const originalRequest = undici.request;
  undici.request = function requestWithBearer(url, opts = {}, ...rest) {
    const headers = { ...(opts.headers ?? {}) };
    if (!Object.keys(headers).some((k) => k.toLowerCase() === 'authorization')) headers.authorization = AUTH;
    let body = opts.body;
    if (PREFIX) [body] = rewriteRequestBody(body);
    return originalRequest.call(this, url, { ...opts, headers, ...(body !== undefined && { body }) }, ...rest);
  };
}
