#!/usr/bin/env python3
"""A web UI where a registry should be, alone or in front of a real registry (stdlib only).

usage: webui.py --port-file FILE [--status CODE] [--upstream URL --switch FILE]

Listens on 127.0.0.1 (a free port, written to --port-file once it listens) and answers every
request, whatever its path or method, with an HTML page and --status (default 200), as a
repository manager's web UI port does.

With --upstream (e.g. http://127.0.0.1:5000) it is a proxy instead: each request is passed to
the upstream registry as it came (method, path, headers, body) and its answer back as it came,
until the --switch FILE exists; from then on, and for as long as it exists, it answers with the
web page. So a test can mount a good registry and have it turn into a web page later.
"""
import argparse
import http.client
import http.server
import os
import sys
import urllib.parse

PAGE = (b"<!DOCTYPE html>\n<html lang=\"en\">\n<head><title>Repository Manager</title></head>\n"
        b"<body><div id=\"app\">Loading...</div></body>\n</html>\n")
# hop-by-hop headers (RFC 9110 7.6.1) are not forwarded
HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
       "upgrade", "proxy-authenticate", "proxy-authorization"}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s\n" % (fmt % args))

    def page(self):
        body = b"" if self.command == "HEAD" else PAGE
        self.send_response(self.server.status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(body)

    def request_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else None

    def proxy(self):
        body = self.request_body()
        up = urllib.parse.urlsplit(self.server.upstream)
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP and k.lower() != "host"}
        headers["Host"] = up.netloc
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in HOP and k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(resp.getheader("Content-Length") or len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    def handle_one(self):
        if self.server.upstream and not os.path.exists(self.server.switch):
            self.proxy()
        else:
            self.request_body()
            self.page()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_one


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--status", type=int, default=200)
    ap.add_argument("--upstream")
    ap.add_argument("--switch")
    a = ap.parse_args()
    if bool(a.upstream) != bool(a.switch):
        ap.error("--upstream and --switch go together")
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.status, srv.upstream, srv.switch = a.status, a.upstream, a.switch
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(tmp, a.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
