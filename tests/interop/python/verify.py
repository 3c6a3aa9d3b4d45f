"""Verifies sessiond access tokens with PyJWT, the way a Python service would: the JWKS fetched
over HTTP from sessiond (``PyJWKClient``), then ``jwt.decode`` with the issuer, the audience, an
algorithm allow-list and a ``typ`` check (PyJWT does not check ``typ`` itself).

Usage: python3 verify.py <jwks url> <issuer> <audience> <alg[,alg...]> <token>...
Prints one JSON line per token, {"ok": true, "alg": ..., "sub": ..., "sid": ...} or
{"ok": false, "error": ...}; exits 0 when every token verified, 1 when any was refused, 2 on a
usage error. Driven by tests/interop/verifiers.rs.
"""

import json
import sys

import jwt

if len(sys.argv) < 6:
    print("usage: python3 verify.py <jwks url> <issuer> <audience> <alg[,alg...]> <token>...",
          file=sys.stderr)
    sys.exit(2)
jwks_url, issuer, audience, algs, *tokens = sys.argv[1:]

# The five lines the README shows.
jwks = jwt.PyJWKClient(jwks_url)
def verify(token):
    if jwt.get_unverified_header(token).get("typ") not in ("at+jwt", "application/at+jwt"):
        raise jwt.InvalidTokenError("typ is not at+jwt")
    key = jwks.get_signing_key_from_jwt(token)
    return jwt.decode(token, key, algorithms=algs.split(","), issuer=issuer, audience=audience,
                      options={"require": ["exp", "iat", "sub"]})

refused = 0
for token in tokens:
    try:
        claims = verify(token)
        alg = jwt.get_unverified_header(token)["alg"]
        print(json.dumps({"ok": True, "alg": alg, "sub": claims["sub"], "sid": claims.get("sid")}))
    except Exception as e:  # every refusal is reported, whatever its class
        refused += 1
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
sys.exit(0 if refused == 0 else 1)
