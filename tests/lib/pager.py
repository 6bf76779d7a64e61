#!/usr/bin/env python3
"""A paginating front for a real registry: distribution 2.8 ignores `n` on tags/list and
answers every tag at once, while GitLab, Harbor and Docker Hub page with `n`, `last` and a
Link header. This proxy slices the real registry's tag list the way the distribution spec
describes (sorted, up to n after `last`, Link rel="next" when more remain) and passes every
other GET/HEAD through unchanged. Used only to exercise pagination against real data.

usage: pager.py LISTEN_PORT UPSTREAM_HOST:PORT   (prints "ready" when listening)
"""
import http.client
import http.server
import json
import sys
import urllib.parse

UPSTREAM = sys.argv[2]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("pager: %s\n" % (fmt % args))

    def forward(self, method):
        conn = http.client.HTTPConnection(UPSTREAM, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        conn.request(method, self.path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        return resp, body

    def send(self, status, headers, body, head=False):
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if not url.path.endswith("/tags/list"):
            resp, body = self.forward("GET")
            self.send(resp.status, resp.getheaders(), body)
            return
        q = urllib.parse.parse_qs(url.query)
        resp, body = self.forward("GET")
        if resp.status != 200:
            self.send(resp.status, resp.getheaders(), body)
            return
        doc = json.loads(body)
        tags = sorted(doc.get("tags") or [])
        n = int(q.get("n", ["100"])[0])
        last = q.get("last", [None])[0]
        if last is not None:
            tags = [t for t in tags if t > last]
        page, rest = tags[:n], tags[n:]
        out = json.dumps({"name": doc.get("name"), "tags": page}).encode()
        headers = [("Content-Type", "application/json; charset=utf-8")]
        if rest:
            nxt = "%s?n=%d&last=%s" % (url.path, n, urllib.parse.quote(page[-1]))
            headers.append(("Link", '<%s>; rel="next"' % nxt))
        self.send(200, headers, out)

    def do_HEAD(self):
        resp, body = self.forward("HEAD")
        self.send(resp.status, resp.getheaders(), b"", head=True)


def main():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print("ready", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
