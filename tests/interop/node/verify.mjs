// Verifies sessiond access tokens with jose, the way a Node service would: the JWKS fetched
// over HTTP from sessiond (`createRemoteJWKSet`), then `jwtVerify` with the issuer, the
// audience, `typ` at+jwt and an algorithm allow-list.
//
// Usage: node verify.mjs <jwks url> <issuer> <audience> <alg[,alg…]> <token>…
// Prints one JSON line per token, {"ok":true,"alg":…,"sub":…,"sid":…} or {"ok":false,"error":…};
// exits 0 when every token verified, 1 when any was refused, 2 on a usage error.
// Driven by tests/interop/verifiers.rs.
import { createRemoteJWKSet, jwtVerify } from 'jose';

const [jwksUrl, issuer, audience, algs, ...tokens] = process.argv.slice(2);
if (!jwksUrl || !issuer || !audience || !algs || tokens.length === 0) {
  console.error('usage: node verify.mjs <jwks url> <issuer> <audience> <alg[,alg…]> <token>…');
  process.exit(2);
}

// The five lines the README shows.
const JWKS = createRemoteJWKSet(new URL(jwksUrl));
const verify = (token) =>
  jwtVerify(token, JWKS, { issuer, audience, typ: 'at+jwt', algorithms: algs.split(',') });

let refused = 0;
for (const token of tokens) {
  try {
    const { payload, protectedHeader } = await verify(token);
    console.log(JSON.stringify({ ok: true, alg: protectedHeader.alg, sub: payload.sub, sid: payload.sid }));
  } catch (e) {
    refused += 1;
    console.log(JSON.stringify({ ok: false, error: `${e.code ?? e.name}: ${e.message}` }));
  }
}
process.exit(refused === 0 ? 0 : 1);
