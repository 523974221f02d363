// A stand-in for the AWS Lambda Invoke API, serving the tools that the MCP conformance suite's
// server scenarios call (`test_simple_text`, `test_image_content`, ...).
//
//   node lambda-fixture.mjs --target-file DIR/conformance.json [--target-name conformance]
//
// Listens on 127.0.0.1, port 0; once bound it writes a Portcullis target file (DESIGN 2.3) whose
// Lambda `endpointUrl` points at itself, then prints `LISTENING <port>` on stdout.
//
// Wire contract (what aws-sdk-lambda sends and what the gateway expects back):
//   POST /2015-03-31/functions/<functionName>/invocations
//   body: the tool's arguments object
//   X-Amz-Client-Context: base64 JSON {"custom": {"bedrockAgentCoreToolName": "<target>___<tool>", ...}}
//   200 + JSON body -> the function's return value (an object with `content` is the MCP result)
//   200 + `X-Amz-Function-Error: Unhandled` -> the function threw (the gateway answers isError)
//
// The fixture is strict about the request: a wrong path, a missing/undecodable client context, a
// tool name that is not `<target>___<tool>` or a non-object body gets a 4xx like the real API
// (or an Unhandled function error), so a gateway regression shows up as a failing scenario.
import http from 'node:http';
import fs from 'node:fs';

const args = process.argv.slice(2);
function arg(name, fallback) {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
}
const targetFile = arg('--target-file');
const targetName = arg('--target-name', 'conformance');
const functionName = arg('--function-name', 'conformance-tools');
const verbose = process.env.LAMBDA_FIXTURE_VERBOSE === '1';

// 1x1 red PNG.
const PNG_1X1 =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC';

// A 10 ms, 8 kHz, 8-bit mono WAV of silence.
function wavBase64() {
  const samples = 80;
  const b = Buffer.alloc(44 + samples, 0x80);
  b.write('RIFF', 0);
  b.writeUInt32LE(36 + samples, 4);
  b.write('WAVE', 8);
  b.write('fmt ', 12);
  b.writeUInt32LE(16, 16); // fmt chunk size
  b.writeUInt16LE(1, 20); // PCM
  b.writeUInt16LE(1, 22); // mono
  b.writeUInt32LE(8000, 24); // sample rate
  b.writeUInt32LE(8000, 28); // byte rate
  b.writeUInt16LE(1, 32); // block align
  b.writeUInt16LE(8, 34); // bits per sample
  b.write('data', 36);
  b.writeUInt32LE(samples, 40);
  return b.toString('base64');
}

const noArgs = { type: 'object', properties: {}, additionalProperties: false };
const text = (t) => ({ content: [{ type: 'text', text: t }] });

// A Lambda function can only return a result: it cannot send notifications (logging, progress)
// or server->client requests (sampling, elicitation) on the MCP session. Those tools answer with
// plain text, and their scenarios stay in baseline.json.
const TOOLS = [
  {
    name: 'test_simple_text',
    description: 'Returns a simple text block',
    inputSchema: noArgs,
    run: () => text('This is a simple text response for testing.'),
  },
  {
    name: 'test_image_content',
    description: 'Returns a 1x1 PNG image block',
    inputSchema: noArgs,
    run: () => ({ content: [{ type: 'image', data: PNG_1X1, mimeType: 'image/png' }] }),
  },
  {
    name: 'test_audio_content',
    description: 'Returns a short WAV audio block',
    inputSchema: noArgs,
    run: () => ({ content: [{ type: 'audio', data: wavBase64(), mimeType: 'audio/wav' }] }),
  },
  {
    name: 'test_embedded_resource',
    description: 'Returns an embedded text resource',
    inputSchema: noArgs,
    run: () => ({
      content: [
        {
          type: 'resource',
          resource: {
            uri: 'test://embedded-resource',
            mimeType: 'text/plain',
            text: 'This is an embedded resource content.',
          },
        },
      ],
    }),
  },
  {
    name: 'test_multiple_content_types',
    description: 'Returns text, image and resource blocks',
    inputSchema: noArgs,
    run: () => ({
      content: [
        { type: 'text', text: 'Multiple content types test:' },
        { type: 'image', data: PNG_1X1, mimeType: 'image/png' },
        {
          type: 'resource',
          resource: {
            uri: 'test://mixed-content-resource',
            mimeType: 'application/json',
            text: '{"test":"data","value":123}',
          },
        },
      ],
    }),
  },
  {
    name: 'test_error_handling',
    description: 'Always fails (an unhandled function error)',
    inputSchema: noArgs,
    run: () => {
      throw new Error('This tool intentionally returns an error for testing');
    },
  },
  {
    name: 'test_tool_with_logging',
    description: 'Would log three messages; a Lambda function cannot send notifications',
    inputSchema: noArgs,
    run: () => text('Tool execution completed (no log notifications: Lambda target)'),
  },
  {
    name: 'test_tool_with_progress',
    description: 'Would report progress; a Lambda function cannot send notifications',
    inputSchema: noArgs,
    run: () => text('Progress test completed (no progress notifications: Lambda target)'),
  },
  {
    name: 'test_sampling',
    description: 'Would ask the client to sample; a Lambda function cannot',
    inputSchema: {
      type: 'object',
      properties: { prompt: { type: 'string' } },
      required: ['prompt'],
    },
    run: () => text('Sampling is not available to a Lambda target'),
  },
  {
    name: 'test_elicitation',
    description: 'Would elicit user input; a Lambda function cannot',
    inputSchema: {
      type: 'object',
      properties: { message: { type: 'string' } },
      required: ['message'],
    },
    run: () => text('Elicitation is not available to a Lambda target'),
  },
  {
    name: 'test_elicitation_sep1034_defaults',
    description: 'Would elicit with defaults (SEP-1034); a Lambda function cannot',
    inputSchema: noArgs,
    run: () => text('Elicitation is not available to a Lambda target'),
  },
  {
    name: 'test_elicitation_sep1330_enums',
    description: 'Would elicit with enums (SEP-1330); a Lambda function cannot',
    inputSchema: noArgs,
    run: () => text('Elicitation is not available to a Lambda target'),
  },
  {
    name: 'test_reconnection',
    description: 'SSE polling test tool (the gateway, not the function, owns the stream)',
    inputSchema: noArgs,
    run: () => text('Reconnection test completed'),
  },
  {
    name: 'json_schema_2020_12_tool',
    description: 'Tool with JSON Schema 2020-12 features',
    inputSchema: {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      type: 'object',
      $defs: {
        address: {
          type: 'object',
          properties: { street: { type: 'string' }, city: { type: 'string' } },
        },
      },
      properties: {
        name: { type: 'string' },
        address: { $ref: '#/$defs/address' },
      },
      additionalProperties: false,
    },
    run: (event) => text(`Received: ${JSON.stringify(event)}`),
  },
];
const byName = new Map(TOOLS.map((t) => [t.name, t]));

const INVOKE = /^\/2015-03-31\/functions\/([^/]+)\/invocations$/;

function send(res, status, body, headers = {}) {
  const data = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(data),
    'x-amzn-RequestId': `fixture-${Date.now()}`,
    ...headers,
  });
  res.end(data);
}

// The real API reports a thrown error as 200 + X-Amz-Function-Error with this payload shape.
function functionError(res, message, type = 'Error') {
  send(res, 200, { errorMessage: message, errorType: type, stackTrace: [] }, {
    'X-Amz-Function-Error': 'Unhandled',
    'X-Amz-Executed-Version': '$LATEST',
  });
}

function apiError(res, status, type, message) {
  send(res, status, { Type: 'User', message }, { 'x-amzn-ErrorType': type });
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const url = new URL(req.url, 'http://fixture');
    const m = req.method === 'POST' && INVOKE.exec(url.pathname);
    if (!m) return apiError(res, 404, 'ResourceNotFoundException', `no route ${req.method} ${url.pathname}`);
    const fn = decodeURIComponent(m[1]);
    if (fn !== functionName) return apiError(res, 404, 'ResourceNotFoundException', `Function not found: ${fn}`);
    if (!req.headers.authorization?.startsWith('AWS4-HMAC-SHA256 '))
      return apiError(res, 403, 'UnrecognizedClientException', 'request is not SigV4-signed');

    let custom;
    try {
      const ctx = JSON.parse(Buffer.from(req.headers['x-amz-client-context'] ?? '', 'base64').toString('utf8'));
      custom = ctx.custom ?? {};
    } catch {
      return apiError(res, 400, 'InvalidRequestContentException', 'X-Amz-Client-Context is missing or not base64 JSON');
    }
    let event;
    try {
      event = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : {};
    } catch {
      return apiError(res, 400, 'InvalidRequestContentException', 'payload is not JSON');
    }
    if (verbose) console.error(`[lambda-fixture] invoke ${fn} custom=${JSON.stringify(custom)} event=${JSON.stringify(event)}`);

    const qualified = custom.bedrockAgentCoreToolName;
    const prefix = `${targetName}___`;
    if (typeof qualified !== 'string' || !qualified.startsWith(prefix))
      return functionError(res, `clientContext.custom.bedrockAgentCoreToolName must be "${prefix}<tool>", got ${JSON.stringify(qualified)}`);
    const tool = byName.get(qualified.slice(prefix.length));
    if (!tool) return functionError(res, `unknown tool ${qualified}`);
    if (event === null || typeof event !== 'object' || Array.isArray(event))
      return functionError(res, `the event must be the arguments object, got ${JSON.stringify(event)}`);
    try {
      send(res, 200, tool.run(event), { 'X-Amz-Executed-Version': '$LATEST' });
    } catch (e) {
      functionError(res, e.message);
    }
  });
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  if (targetFile) {
    const target = {
      name: targetName,
      description: 'MCP conformance suite tools, served by tests/conformance/lambda-fixture.mjs',
      lambda: { functionArn: functionName, endpointUrl: `http://127.0.0.1:${port}`, region: 'us-east-1' },
      tools: TOOLS.map(({ name, description, inputSchema }) => ({ name, description, inputSchema })),
    };
    fs.writeFileSync(targetFile, JSON.stringify(target, null, 2) + '\n');
  }
  console.log(`LISTENING ${port}`);
});

for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)));
