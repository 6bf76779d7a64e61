#!/usr/bin/env python3
"""A small Docker registry token server (the Bearer flow of the distribution token spec).

Test helper for stagefs, stdlib only. Not for production: keys, users and tokens live in
memory, there is no TLS, and every authenticated user gets what it asks for (read-only users:
pull only).

  token_server.py --key KEY.pem --cert CERT.pem --user USER:PASS [--user ...]
                  [--readonly-user USER:PASS ...] [--issuer ISS] [--service SVC]
                  [--host 127.0.0.1] [--port 0] [--port-file FILE] [--expires-in 300]
                  [--jwt-header x5c|kid|both] [--refresh-tokens]

Endpoints:
  GET  /token?service=S&scope=T:NAME:ACTIONS[&scope=...]&account=U   (Basic auth required)
  POST /token  (form: grant_type=password&username&password | grant_type=refresh_token
                &refresh_token; service, scope, client_id)
  GET  /stats  -> {"issued": N, "denied": M, "requests": K} (no auth; for tests)

Anonymous or wrong credentials get 401 with `WWW-Authenticate: Basic realm=...`.
A token answer is {"token", "access_token", "expires_in", "issued_at"} (+ "refresh_token"
with --refresh-tokens when the client asks for offline access).

The JWT is RS256, signed in pure Python with the RSA key (PKCS#1 or PKCS#8 PEM, as openssl
writes). Its header carries what distribution 2.8 needs to find the key: `x5c` (the DER
certificate, standard base64), and/or `kid` in libtrust's key ID form (base32 of the first 30
bytes of sha256(SubjectPublicKeyInfo DER), in groups of 4 joined by ':'), which 2.8 matches
against the certificates of its `rootcertbundle`.
"""

import argparse
import base64
import datetime
import hashlib
import json
import os
import secrets
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


# --- minimal DER --------------------------------------------------------------------------

def der_item(buf, pos):
    """Return (tag, content_start, content_end) of the DER item at pos."""
    tag = buf[pos]
    n = buf[pos + 1]
    pos += 2
    if n & 0x80:
        cnt = n & 0x7F
        n = int.from_bytes(buf[pos:pos + cnt], "big")
        pos += cnt
    return tag, pos, pos + n


def der_children(buf, start, end):
    out = []
    pos = start
    while pos < end:
        tag, cs, ce = der_item(buf, pos)
        out.append((tag, pos, cs, ce))
        pos = ce
    return out


def pem_to_der(text, label=None):
    lines = []
    inside = False
    for line in text.splitlines():
        if line.startswith("-----BEGIN"):
            if label is None or label in line:
                inside = True
            continue
        if line.startswith("-----END"):
            if inside:
                break
            continue
        if inside:
            lines.append(line.strip())
    if not lines:
        raise ValueError("no PEM block found")
    return base64.b64decode("".join(lines))


def rsa_private_from_pem(text):
    der = pem_to_der(text)
    tag, cs, ce = der_item(der, 0)
    kids = der_children(der, cs, ce)
    # PKCS#8: version INTEGER, AlgorithmIdentifier SEQUENCE, privateKey OCTET STRING
    if len(kids) >= 3 and kids[1][0] == 0x30 and kids[2][0] == 0x04:
        inner = der[kids[2][2]:kids[2][3]]
        tag, cs, ce = der_item(inner, 0)
        der, kids = inner, der_children(inner, cs, ce)
    ints = [int.from_bytes(der[c[2]:c[3]], "big") for c in kids]
    _, n, e, d, p, q, dp, dq, qinv = ints[:9]
    return {"n": n, "e": e, "d": d, "p": p, "q": q, "dp": dp, "dq": dq, "qinv": qinv}


def cert_der_and_spki(text):
    der = pem_to_der(text, "CERTIFICATE")
    _, cs, ce = der_item(der, 0)
    tbs = der_children(der, cs, ce)[0]
    fields = der_children(der, tbs[2], tbs[3])
    if fields[0][0] == 0xA0:  # explicit version
        fields = fields[1:]
    # serial, signature alg, issuer, validity, subject, subjectPublicKeyInfo
    spki = fields[5]
    return der, der[spki[1]:spki[3]]


def libtrust_key_id(spki_der):
    s = base64.b32encode(hashlib.sha256(spki_der).digest()[:30]).decode().rstrip("=")
    return ":".join(s[i:i + 4] for i in range(0, len(s), 4))


SHA256_DIGESTINFO = bytes.fromhex("3031300d060960864801650304020105000420")


def rs256_sign(key, msg):
    k = (key["n"].bit_length() + 7) // 8
    t = SHA256_DIGESTINFO + hashlib.sha256(msg).digest()
    em = b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
    m = int.from_bytes(em, "big")
    # CRT
    m1 = pow(m, key["dp"], key["p"])
    m2 = pow(m, key["dq"], key["q"])
    h = (key["qinv"] * (m1 - m2)) % key["p"]
    s = m2 + h * key["q"]
    return s.to_bytes(k, "big")


def log(msg):
    sys.stderr.write("%s token_server: %s\n" % (datetime.datetime.now().isoformat(timespec="milliseconds"), msg))
    sys.stderr.flush()


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


# --- server -------------------------------------------------------------------------------

class State:
    def __init__(self, a):
        with open(a.key) as f:
            self.key = rsa_private_from_pem(f.read())
        with open(a.cert) as f:
            cert_der, spki = cert_der_and_spki(f.read())
        self.header = {"typ": "JWT", "alg": "RS256"}
        if a.jwt_header in ("x5c", "both"):
            self.header["x5c"] = [base64.b64encode(cert_der).decode()]
        if a.jwt_header in ("kid", "both"):
            self.header["kid"] = libtrust_key_id(spki)
        self.users = {}
        for spec, ro in [(u, False) for u in a.user] + [(u, True) for u in a.readonly_user]:
            user, sep, pw = spec.partition(":")
            if not sep:
                raise SystemExit("token_server: user wants USER:PASS")
            self.users[user] = (pw, ro)
        self.issuer = a.issuer
        self.service = a.service
        self.expires_in = a.expires_in
        self.refresh_tokens = a.refresh_tokens
        self.refresh = {}
        self.lock = threading.Lock()
        self.stats = {"issued": 0, "denied": 0, "requests": 0}

    def count(self, what):
        with self.lock:
            self.stats[what] += 1

    def check(self, user, pw):
        ent = self.users.get(user)
        return ent is not None and secrets.compare_digest(ent[0], pw)

    def grant(self, user, scopes):
        ro = self.users[user][1]
        access = []
        for sc in scopes:
            typ, sep, rest = sc.partition(":")
            name, sep2, actions = rest.rpartition(":")
            if not sep or not sep2 or not name:
                continue
            asked = [x for x in actions.split(",") if x]
            if typ == "repository":
                allowed = {"pull"} if ro else {"pull", "push", "delete", "*"}
            elif typ == "registry" and name == "catalog":
                allowed = {"*"}
            else:
                allowed = set()
            got = [x for x in asked if x in allowed]
            access.append({"type": typ, "name": name, "actions": got})
        return access

    def token(self, user, service, scopes):
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": user,
            "aud": service or self.service,
            "exp": now + self.expires_in,
            "nbf": now - 60,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": self.grant(user, scopes),
        }
        signing_input = (b64url(json.dumps(self.header, separators=(",", ":")).encode()) + "." +
                         b64url(json.dumps(claims, separators=(",", ":")).encode()))
        sig = rs256_sign(self.key, signing_input.encode())
        return signing_input + "." + b64url(sig), now


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "stagefs-test-token-server/1"
    state = None  # set in main

    def log_message(self, fmt, *args):
        log(fmt % args)

    def send_json(self, code, doc, headers=()):
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def deny(self, why):
        self.state.count("denied")
        self.log_message("401 %s", why)
        self.send_json(401, {"errors": [{"code": "UNAUTHORIZED", "message": why}]},
                       [("WWW-Authenticate", 'Basic realm="stagefs-test-token-server"')])

    def basic_creds(self):
        h = self.headers.get("Authorization", "")
        if not h.lower().startswith("basic "):
            return None
        try:
            user, sep, pw = base64.b64decode(h[6:].strip()).decode().partition(":")
        except Exception:
            return None
        return (user, pw) if sep else None

    def answer(self, user, service, scopes, offline):
        tok, now = self.state.token(user, service, scopes)
        doc = {
            "token": tok,
            "access_token": tok,
            "expires_in": self.state.expires_in,
            "issued_at": datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if offline and self.state.refresh_tokens:
            rt = "rt-" + secrets.token_hex(16)
            with self.state.lock:
                self.state.refresh[rt] = user
            doc["refresh_token"] = rt
        self.state.count("issued")
        self.log_message("token for %s scopes=%s", user, scopes)
        self.send_json(200, doc)

    def do_GET(self):
        self.state.count("requests")
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(u.query)
        if u.path == "/stats":
            with self.state.lock:
                return self.send_json(200, dict(self.state.stats))
        if u.path != "/token":
            return self.send_json(404, {"errors": [{"code": "NOT_FOUND", "message": u.path}]})
        creds = self.basic_creds()
        if creds is None:
            return self.deny("authentication required")
        if not self.state.check(*creds):
            return self.deny("bad credentials for %r" % creds[0])
        scopes = [s for v in q.get("scope", []) for s in v.split(" ") if s]
        self.answer(creds[0], (q.get("service") or [None])[0], scopes,
                    (q.get("offline_token") or ["false"])[0] == "true")

    do_HEAD = do_GET

    def do_POST(self):
        self.state.count("requests")
        u = urllib.parse.urlsplit(self.path)
        if u.path != "/token":
            return self.send_json(404, {"errors": [{"code": "NOT_FOUND", "message": u.path}]})
        n = int(self.headers.get("Content-Length") or 0)
        if n > 65536:
            return self.send_json(400, {"error": "invalid_request"})
        form = urllib.parse.parse_qs(self.rfile.read(n).decode(errors="replace"))
        f = lambda k: (form.get(k) or [""])[0]
        scopes = [s for v in form.get("scope", []) for s in v.split(" ") if s]
        grant = f("grant_type")
        if grant == "password":
            if not self.state.check(f("username"), f("password")):
                return self.deny("bad credentials for %r" % f("username"))
            user = f("username")
        elif grant == "refresh_token":
            with self.state.lock:
                user = self.state.refresh.get(f("refresh_token"))
            if user is None:
                return self.deny("unknown refresh token")
        else:
            return self.send_json(400, {"error": "unsupported_grant_type"})
        self.answer(user, f("service") or None, scopes, f("access_type") == "offline")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--key", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--user", action="append", default=[])
    ap.add_argument("--readonly-user", action="append", default=[])
    ap.add_argument("--issuer", default="stagefs-test-token-server")
    ap.add_argument("--service", default="stagefs-test-registry")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--expires-in", type=int, default=300)
    ap.add_argument("--jwt-header", choices=["x5c", "kid", "both"], default="x5c")
    ap.add_argument("--refresh-tokens", action="store_true")
    a = ap.parse_args()
    Handler.state = State(a)
    srv = ThreadingHTTPServer((a.host, a.port), Handler)
    srv.daemon_threads = True
    port = srv.server_address[1]
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, a.port_file)
    log("listening on %s:%d (jwt header %s)" % (a.host, port, a.jwt_header))
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
