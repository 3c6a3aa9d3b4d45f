// The OpenID provider the OIDC login tests run against: oidc-provider (OpenID-certified), as a
// stand-in for Google. Usage: node provider.mjs PORT CLIENT_ID CLIENT_SECRET
//
// * Logins finish without a browser: the interaction takes `login_hint` as the account and
//   grants what was asked. Accounts are made up from the hint: `NAME@DOMAIN` has a verified
//   email; `unverified+...` an unverified one; `noemail+...` none; `deny+...` ends the login with
//   `error=access_denied`.
// * Test hooks, `POST /__test/{hook}`, each for the next ID token only:
//   `wrong-nonce` (a nonce the relying party never sent), `other-audience` (an ID token for
//   another client), and `rotate` (a new signing key, with a new `kid`, for every later token).
// * Prints `issuer=http://127.0.0.1:PORT` on stdout once it listens; the tests read it there.
import * as crypto from 'node:crypto';
import * as http from 'node:http';

import Provider from 'oidc-provider';

const [port, clientId, clientSecret] = process.argv.slice(2);
if (!port || !clientId || !clientSecret) {
  console.error('usage: node provider.mjs PORT CLIENT_ID CLIENT_SECRET');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;
const hooks = { wrongNonce: false, otherAudience: false };

function account(hint) {
  const id = hint || 'alice@example.com';
  const plain = id.replace(/^(unverified|noemail|deny)\+/, '');
  const claims = { sub: `sub-${id}`, name: plain.split('@')[0] };
  if (!id.startsWith('noemail+')) {
    claims.email = plain;
    claims.email_verified = !id.startsWith('unverified+');
  }
  return claims;
}

function newKey(n) {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: `test-key-${n}`, use: 'sig', alg: 'RS256' };
}

let generation = 0;

function buildProvider() {
  generation += 1;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: ['http://127.0.0.1/placeholder'],
      grant_types: ['authorization_code'],
      response_types: ['code'],
    }],
    jwks: { keys: [newKey(generation)] },
    pkce: { required: () => true },
    conformIdTokenClaims: false,
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    features: { devInteractions: { enabled: false } },
    findAccount: (ctx, sub) => ({
      accountId: sub,
      claims: () => account(sub.replace(/^sub-/, '')),
    }),
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    loadExistingGrant: async (ctx) => {
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid email profile');
      await grant.save();
      return grant;
    },
  });
  // Every loopback redirect URI is allowed: sessiond's port is only known once it runs.
  provider.Client.prototype.redirectUriAllowed = (uri) => uri.startsWith('http://127.0.0.1:');
  const { IdToken } = provider;
  const originalSet = IdToken.prototype.set;
  IdToken.prototype.set = function set(key, value) {
    if (key === 'nonce' && hooks.wrongNonce) {
      hooks.wrongNonce = false;
      return originalSet.call(this, key, 'a-nonce-the-relying-party-never-sent');
    }
    return originalSet.call(this, key, value);
  };
  const originalIssue = IdToken.prototype.issue;
  IdToken.prototype.issue = async function issue(options) {
    if (options?.use === 'idtoken' && hooks.otherAudience) {
      hooks.otherAudience = false;
      const real = this.client;
      this.client = Object.create(real, { clientId: { value: 'another-client' } });
      try {
        return await originalIssue.call(this, options);
      } finally {
        this.client = real;
      }
    }
    return originalIssue.call(this, options);
  };
  return provider;
}

let provider = buildProvider();

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const hint = details.params.login_hint;
  if (hint?.startsWith('deny+')) {
    return provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'the user said no',
    }, { mergeWithLastSubmission: false });
  }
  return provider.interactionFinished(req, res, {
    login: { accountId: `sub-${hint || 'alice@example.com'}` },
  }, { mergeWithLastSubmission: false });
}

const server = http.createServer((req, res) => {
  if (req.method === 'POST' && req.url.startsWith('/__test/')) {
    const hook = req.url.slice('/__test/'.length);
    if (hook === 'wrong-nonce') hooks.wrongNonce = true;
    else if (hook === 'other-audience') hooks.otherAudience = true;
    else if (hook === 'rotate') provider = buildProvider();
    else { res.writeHead(404).end(); return; }
    res.writeHead(204).end();
    return;
  }
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((e) => {
      console.error(e);
      res.writeHead(500).end();
    });
    return;
  }
  provider.callback()(req, res);
});

server.listen(Number(port), '127.0.0.1', () => {
  console.log(`issuer=${issuer}`);
});
