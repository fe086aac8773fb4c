// A real OpenID Provider for the dashboard's sign-in tests: panva's oidc-provider (certified
// OpenID Connect implementation) from node_modules, on one loopback port, with one confidential
// client and the package's own development sign-in and consent pages (any login name is an
// account; its `sub` is that name and its e-mail `<name>@example.test`, verified).
//
// usage: node provider.mjs --port N --issuer URL --client-id ID --secret-file PATH --redirect-uri URI
// Prints "ready <issuer>" on stdout once it listens; SIGTERM or SIGINT stop it at once.
// On Node 20 the package warns that it wants Node 22 LTS; it runs (the tests run it on Node 20).

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    issuer: { type: 'string' },
    'client-id': { type: 'string' },
    'secret-file': { type: 'string' },
    'redirect-uri': { type: 'string' },
  },
});
for (const name of ['port', 'issuer', 'client-id', 'secret-file', 'redirect-uri']) {
  if (!args[name]) {
    console.error(`provider.mjs: --${name} is required`);
    process.exit(2);
  }
}

// A signing key made at start: the relying party must fetch it from the JWKS the discovery names.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signing = { ...privateKey.export({ format: 'jwk' }), kid: randomBytes(8).toString('hex'), use: 'sig', alg: 'RS256' };

const provider = new Provider(args.issuer, {
  clients: [{
    client_id: args['client-id'],
    client_secret: readFileSync(args['secret-file'], 'utf8').trim(),
    redirect_uris: [args['redirect-uri']],
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [signing] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: `${id}@example.test`, email_verified: true };
      },
    };
  },
});

const server = provider.listen(Number(args.port), '127.0.0.1', () => {
  console.log(`ready ${args.issuer}`);
});

function stop() {
  server.closeAllConnections();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 500).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
