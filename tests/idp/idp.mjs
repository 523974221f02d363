// A real OpenID Connect provider (npm `oidc-provider`, pinned in package.json) for Portcullis
// integration tests.
//
//   node tests/idp/idp.mjs            # IDP_PORT=0 (default) picks an ephemeral port
//
// Contract with the test harness (tests/support/idp.rs):
//   * stdout carries exactly ONE line of JSON once the server listens:
//       {"issuer": "http://127.0.0.1:<port>", "kid": "...", "private_key_pem": "<PKCS#8 PEM>"}
//     and nothing else, ever. All logging goes to stderr.
//   * the process exits when its stdin closes (so a crashed test cannot leak it), on SIGTERM and
//     on SIGINT. Set IDP_IGNORE_STDIN=1 to run it detached (e.g. as a shared IdP for a test run,
//     see PORTCULLIS_TEST_IDP in tests/support/idp.rs).
//
// Environment:
//   IDP_PORT            port to bind on 127.0.0.1 (default 0 = ephemeral)
//   IDP_ROTATE_REFRESH  "0" disables refresh-token rotation (default: rotate on every use)
//   IDP_IGNORE_STDIN    "1" keeps running after stdin closes
//   IDP_STRICT_CLIENT_AUTH "0" lets a client use client_secret_basic and client_secret_post
//                       interchangeably (oidc-provider's own behaviour); default: only the
//                       registered token_endpoint_auth_method is accepted

import * as crypto from 'node:crypto';
import * as http from 'node:http';

// ---------------------------------------------------------------------------------------------
// stdout is reserved for the single JSON line. oidc-provider prints its NOTICEs with
// console.info (stdout), so route every console method to stderr *before* loading it.
// ---------------------------------------------------------------------------------------------
const writeStdout = process.stdout.write.bind(process.stdout);
for (const method of ['log', 'info', 'debug', 'trace', 'dir']) {
  // eslint-disable-next-line no-console
  console[method] = console.error.bind(console);
}
process.stdout.write = (chunk, ...rest) => process.stderr.write(chunk, ...rest);

const { default: Provider, errors } = await import('oidc-provider');

const log = (...args) => console.error('[idp]', ...args);

// ---------------------------------------------------------------------------------------------
// Lifecycle: exit on SIGTERM / SIGINT / stdin EOF.
// ---------------------------------------------------------------------------------------------
let shuttingDown = false;
function shutdown(reason) {
  if (shuttingDown) return;
  shuttingDown = true;
  log(`shutting down (${reason})`);
  process.exit(0);
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
if (process.env.IDP_IGNORE_STDIN !== '1') {
  process.stdin.on('end', () => shutdown('stdin closed'));
  process.stdin.on('close', () => shutdown('stdin closed'));
  process.stdin.on('error', () => shutdown('stdin error'));
  process.stdin.resume(); // discard anything written to us; we only care about EOF
}
// A parent that goes away may close our stdout too: never die noisily over that.
process.stdout.on('error', () => {});

// ---------------------------------------------------------------------------------------------
// Signing key: fresh RSA-2048 per process, kid = RFC 7638 JWK thumbprint.
// ---------------------------------------------------------------------------------------------
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const privateJwk = privateKey.export({ format: 'jwk' });
const kid = crypto
  .createHash('sha256')
  .update(JSON.stringify({ e: privateJwk.e, kty: privateJwk.kty, n: privateJwk.n }))
  .digest('base64url');
const privateKeyPem = privateKey.export({ type: 'pkcs8', format: 'pem' });
const signingJwk = {
  ...privateJwk, kid, alg: 'RS256', use: 'sig',
};

// ---------------------------------------------------------------------------------------------
// Bind first: the issuer must contain the actual port.
// ---------------------------------------------------------------------------------------------
const requestedPort = Number.parseInt(process.env.IDP_PORT ?? '0', 10);
if (!Number.isInteger(requestedPort) || requestedPort < 0 || requestedPort > 65535) {
  log(`invalid IDP_PORT ${JSON.stringify(process.env.IDP_PORT)}`);
  process.exit(2);
}

let handler = (_req, res) => {
  res.statusCode = 503;
  res.end('starting');
};
const server = http.createServer((req, res) => handler(req, res));
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(requestedPort, '127.0.0.1', resolve);
});
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

// ---------------------------------------------------------------------------------------------
// Provider configuration.
// ---------------------------------------------------------------------------------------------
const RESOURCE_SCOPE = 'mcp tools.read tools.write profile extra';
const DEFAULT_RESOURCE = 'urn:portcullis:test';

// A small user directory: the claims an enterprise IdP adds to its users' access tokens, for
// the policy tests (Cedar principal tags, DESIGN 2.10). Other accounts get none.
const DIRECTORY = {
  'fin-alice': { department: 'finance', level: 7, groups: ['finance', 'staff'] },
  'eng-bob': { department: 'engineering', level: 4, groups: ['engineering', 'staff'] },
  'intern-ivy': { department: 'engineering', role: 'intern', contractor: true },
};
const rotateRefresh = process.env.IDP_ROTATE_REFRESH !== '0';

function isAbsoluteUri(value) {
  if (typeof value !== 'string') return false;
  try {
    // eslint-disable-next-line no-new
    new URL(value);
    return /^[A-Za-z][A-Za-z0-9+.-]*:/.test(value);
  } catch {
    return false;
  }
}

const ALL_GRANTS = ['authorization_code', 'refresh_token', 'client_credentials'];

const clients = [
  {
    client_id: 'mcp-client',
    client_secret: 'mcp-client-secret',
    scope: 'openid mcp tools.read tools.write profile extra offline_access',
    redirect_uris: ['http://127.0.0.1/callback'],
    application_type: 'native',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ALL_GRANTS,
    response_types: ['code'],
  },
  {
    client_id: 'other-client',
    client_secret: 'other-client-secret',
    scope: 'openid mcp tools.read tools.write profile extra offline_access',
    redirect_uris: ['http://127.0.0.1/callback'],
    application_type: 'native',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ALL_GRANTS,
    response_types: ['code'],
  },
  {
    client_id: 'portcullis',
    client_secret: 'portcullis-secret',
    redirect_uris: ['http://127.0.0.1/oauth2/login/callback', 'http://127.0.0.1/oauth2/callback'],
    application_type: 'native',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ALL_GRANTS,
    response_types: ['code'],
  },
  {
    client_id: 'downstream-app',
    client_secret: 'downstream-app-secret',
    redirect_uris: ['http://127.0.0.1/oauth2/callback'],
    application_type: 'native',
    token_endpoint_auth_method: 'client_secret_post',
    grant_types: ALL_GRANTS,
    response_types: ['code'],
  },
];

const configuration = {
  // Directory claims go into JWT access tokens (user tokens: the account's; none otherwise).
  async extraTokenClaims(_ctx, token) {
    return (token.accountId && DIRECTORY[token.accountId]) || undefined;
  },
  clients,
  jwks: { keys: [signingJwk] },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },

  // Any account id exists.
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: `${id}@example.test`, name: id };
      },
    };
  },
  // Client `scope` metadata may only name scopes the AS supports, so the resource-server scopes
  // are declared here too.
  scopes: ['openid', 'offline_access', ...RESOURCE_SCOPE.split(' ')],
  claims: {
    openid: ['sub'],
    email: ['email'],
    profile: ['name'],
  },

  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      async defaultResource(_ctx, _client, oneOf) {
        if (oneOf) return oneOf;
        return DEFAULT_RESOURCE;
      },
      async useGrantedResource() {
        return true;
      },
      async getResourceServerInfo(_ctx, resourceIndicator) {
        if (!isAbsoluteUri(resourceIndicator)) {
          throw new errors.InvalidTarget('resource indicator must be an absolute URI');
        }
        return {
          scope: RESOURCE_SCOPE,
          audience: resourceIndicator,
          accessTokenTTL: 3600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },

  // Refresh tokens for every client allowed to use the refresh_token grant (no offline_access
  // needed), rotated on every use unless IDP_ROTATE_REFRESH=0.
  async issueRefreshToken(_ctx, client) {
    return client.grantTypeAllowed('refresh_token');
  },
  rotateRefreshToken() {
    return rotateRefresh;
  },

  // Explicit TTLs (also silences oidc-provider's "you SHOULD change" notices).
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 60,
    ClientCredentials: 3600,
    IdToken: 3600,
    RefreshToken: 24 * 3600,
    Interaction: 600,
    Session: 24 * 3600,
    Grant: 24 * 3600,
  },

  async renderError(ctx, out, error) {
    log('renderError', out, error?.message);
    ctx.type = 'application/json';
    ctx.body = out;
  },
};

const provider = new Provider(issuer, configuration);

provider.on('server_error', (_ctx, err) => log('server_error', err));
provider.on('grant.error', (_ctx, err) => log('grant.error', err?.message, err?.error_description ?? ''));
provider.on('authorization.error', (_ctx, err) => log('authorization.error', err?.message, err?.error_description ?? ''));

// ---------------------------------------------------------------------------------------------
// Programmatic interactions: GET /interaction/:uid
//   login prompt   -> account = login_hint of the authorization request (400 if missing)
//   consent prompt -> grant everything that was requested
// ---------------------------------------------------------------------------------------------
function sendError(res, status, message) {
  log(`interaction error ${status}: ${message}`);
  const body = JSON.stringify({ error: status === 400 ? 'invalid_request' : 'server_error', error_description: message });
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(body);
}

async function handleInteraction(req, res, uid) {
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    sendError(res, 400, `interaction ${uid} not found (is the _interaction cookie being sent?): ${err.message}`);
    return;
  }
  if (details.uid !== uid) {
    sendError(res, 400, `interaction cookie is for ${details.uid}, not ${uid}`);
    return;
  }

  const { prompt, params, session } = details;
  switch (prompt.name) {
    case 'login': {
      const accountId = params.login_hint;
      if (typeof accountId !== 'string' || accountId.length === 0) {
        sendError(res, 400, 'login_hint is required: the test IdP logs in the account named by the login_hint authorization request parameter');
        return;
      }
      log(`login ${accountId} (interaction ${uid}, client ${params.client_id})`);
      await provider.interactionFinished(req, res, { login: { accountId } }, { mergeWithLastSubmission: false });
      return;
    }
    case 'consent': {
      const { accountId } = session;
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId, clientId: params.client_id });
      const {
        missingOIDCScope, missingOIDCClaims, missingResourceScopes,
      } = prompt.details;
      if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
      if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
      if (missingResourceScopes) {
        for (const [indicator, scopes] of Object.entries(missingResourceScopes)) {
          grant.addResourceScope(indicator, scopes.join(' '));
        }
      }
      const grantId = await grant.save();
      log(`consent ${accountId} -> grant ${grantId} (interaction ${uid})`);
      await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
      return;
    }
    default:
      sendError(res, 400, `unsupported prompt ${prompt.name}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Strict client authentication. oidc-provider 9 treats client_secret_basic and client_secret_post
// as interchangeable for a client registered with either. A test IdP should tell them apart (as
// e.g. Okta does), so that a gateway sending the wrong one fails: on the endpoints that
// authenticate clients, a known client using a method other than its registered
// token_endpoint_auth_method gets 401 invalid_client. IDP_STRICT_CLIENT_AUTH=0 turns this off.
// ---------------------------------------------------------------------------------------------
const strictClientAuth = process.env.IDP_STRICT_CLIENT_AUTH !== '0';
const registeredAuthMethod = new Map(
  clients.map((c) => [c.client_id, c.token_endpoint_auth_method ?? 'client_secret_basic']),
);
const CLIENT_AUTH_PATHS = new Set(['/token', '/token/introspection', '/token/revocation']);
const BODY_LIMIT = 56 * 1024;

function decodeBasicPart(value) {
  try {
    return decodeURIComponent(value.replace(/\+/g, ' '));
  } catch {
    return value;
  }
}

// Returns true when the request was answered here.
async function enforceClientAuthMethod(req, res) {
  const chunks = [];
  let received = 0;
  for await (const chunk of req) {
    received += chunk.length;
    if (received > BODY_LIMIT) {
      sendError(res, 413, 'request body too large');
      return true;
    }
    chunks.push(chunk);
  }
  const body = Buffer.concat(chunks, received);
  // The stream is consumed: oidc-provider falls back to an already-read req.body.
  req.body = body;

  let used;
  let clientId;
  const authorization = req.headers.authorization ?? '';
  const basic = /^basic\s+(\S+)$/i.exec(authorization);
  if (basic) {
    const decoded = Buffer.from(basic[1], 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    if (i !== -1) {
      used = 'client_secret_basic';
      clientId = decodeBasicPart(decoded.slice(0, i));
    }
  } else if ((req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded')) {
    const params = new URLSearchParams(body.toString('utf8'));
    if (params.has('client_secret')) {
      used = 'client_secret_post';
      clientId = params.get('client_id');
    }
  }
  const registered = clientId !== undefined ? registeredAuthMethod.get(clientId) : undefined;
  if (used && registered && used !== registered) {
    const description = `client ${clientId} must authenticate with ${registered}, not ${used}`;
    log(`invalid_client: ${description}`);
    const payload = JSON.stringify({ error: 'invalid_client', error_description: description });
    res.statusCode = 401;
    if (used === 'client_secret_basic') res.setHeader('WWW-Authenticate', 'Basic realm="test-idp"');
    res.setHeader('Content-Type', 'application/json');
    res.setHeader('Content-Length', Buffer.byteLength(payload));
    res.end(payload);
    return true;
  }
  return false;
}

const providerCallback = provider.callback();
const INTERACTION_PATH = /^\/interaction\/([^/?#]+)\/?(?:\?.*)?$/;

function fail(res, err) {
  if (!res.headersSent) sendError(res, 500, err?.stack ?? String(err));
  else res.destroy();
}

handler = (req, res) => {
  const match = req.method === 'GET' ? INTERACTION_PATH.exec(req.url) : null;
  if (match) {
    handleInteraction(req, res, decodeURIComponent(match[1])).catch((err) => fail(res, err));
    return;
  }
  const path = req.url.split('?', 1)[0];
  if (strictClientAuth && req.method === 'POST' && CLIENT_AUTH_PATHS.has(path)) {
    enforceClientAuthMethod(req, res)
      .then((handled) => {
        if (!handled) providerCallback(req, res);
      })
      .catch((err) => fail(res, err));
    return;
  }
  providerCallback(req, res);
};

log(`listening on ${issuer}`);
writeStdout(`${JSON.stringify({ issuer, kid, private_key_pem: privateKeyPem })}\n`);
