#!/usr/bin/env python3
"""A header-rewriting front for a real registry, for the header forms a real registry does not
send: a generic or parameterized Content-Type on manifests, several WWW-Authenticate
challenges in one line or over several lines, and so on (RFC 9110 allows them all, and proxies
and other registry products send them). Every request is passed through to UPSTREAM as it is;
the answer's headers are then rewritten by the first matching rule of RULES (a JSON file, read
again on each request so a test can change it between mounts):

  [{"method": "GET", "path": "^/v2/json/", "status": 200,
    "set": [["Content-Type", "application/json"]]}, ...]

"method", "path" (a regular expression searched in the request path) and "status" are
optional filters; "set" removes every header of each name it lists and then sends the given
lines in order (a name given twice is sent as two lines). Bodies pass unchanged.

usage: rewrite_proxy.py LISTEN_PORT UPSTREAM_HOST:PORT RULES.json   (prints "ready")
"""
import http.client
import http.server
import json
import re
import sys

UPSTREAM = sys.argv[2]
RULES = sys.argv[3]
HOP = ("content-length", "connection", "transfer-encoding", "keep-alive")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("rewrite_proxy: %s\n" % (fmt % args))

    def rule(self, method, status):
        with open(RULES) as f:
            rules = json.load(f)
        for r in rules:
            if r.get("method", method) != method or r.get("status", status) != status:
                continue
            if re.search(r.get("path", ""), self.path):
                return r
        return None

    def relay(self, method):
        n = int(self.headers.get("Content-Length") or 0)
        req_body = self.rfile.read(n) if n else None
        conn = http.client.HTTPConnection(UPSTREAM, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        conn.request(method, self.path, body=req_body, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        out = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP]
        r = self.rule(method, resp.status)
        if r:
            names = {k.lower() for k, _ in r.get("set", [])}
            out = [(k, v) for k, v in out if k.lower() not in names] + [tuple(x) for x in r["set"]]
            self.log_message("rewrote %s %s (%d): %s", method, self.path, resp.status, r["set"])
        self.send_response(resp.status)
        for k, v in out:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        self.relay("GET")

    def do_HEAD(self):
        self.relay("HEAD")


def main():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print("ready", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
