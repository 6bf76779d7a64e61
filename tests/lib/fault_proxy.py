#!/usr/bin/env python3
"""A front for a real registry that fails chosen requests on purpose, for the write path's
failure tests: what a real registry does not do on demand (a 500 or a 429 now, a connection
reset in the middle of an upload). Every other request is passed to UPSTREAM as it is, with
its Host header, so the registry's Location headers keep pointing at this proxy.

RULES is a JSON file, read again on each request, so a test can change it between copies:

  [{"method": "PUT", "path": "/blobs/uploads/", "action": "status", "status": 500,
    "times": 2},
   {"method": "PUT", "path": "/manifests/", "action": "status", "status": 429,
    "retry_after": "1", "times": 1},
   {"method": "PATCH", "path": "/blobs/uploads/", "action": "reset"}]

The first rule whose method, path (a regular expression searched in the request path) and
content_type (searched in the request's Content-Type) match applies; "times" counts down in the file (a rule at 0 no longer applies; without
"times" it always applies). "status" answers with that status and a registry error body;
"reset" reads half of the request body, then resets the connection; "delay" waits "seconds"
before passing the request on (to stop a copy at a known point).
Each request is logged to stderr as "METHOD PATH -> STATUS|reset".

usage: fault_proxy.py LISTEN_PORT UPSTREAM_HOST:PORT RULES.json   (prints "ready")
"""
import http.client
import http.server
import json
import re
import socket
import struct
import sys
import threading

UPSTREAM = sys.argv[2]
RULES = sys.argv[3]
HOP = ("content-length", "connection", "transfer-encoding", "keep-alive")
LOCK = threading.Lock()


def take_rule(method, path, content_type):
    with LOCK:
        with open(RULES) as f:
            rules = json.load(f)
        for r in rules:
            if r.get("method", method) != method or not re.search(r.get("path", ""), path):
                continue
            if not re.search(r.get("content_type", ""), content_type):
                continue
            if "times" in r:
                if r["times"] <= 0:
                    continue
                r["times"] -= 1
                with open(RULES, "w") as f:
                    json.dump(rules, f)
            return r
    return None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def note(self, what):
        sys.stderr.write("%s %s -> %s\n" % (self.command, self.path, what))
        sys.stderr.flush()

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else None

    def handle_one(self):
        method = self.command
        r = take_rule(method, self.path, self.headers.get("Content-Type", ""))
        if r and r["action"] == "reset":
            n = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(n // 2)
            self.note("reset")
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        data = self.body()
        if r and r["action"] == "delay":
            self.note("delayed %ss" % r["seconds"])
            threading.Event().wait(r["seconds"])
        if r and r["action"] == "status":
            msg = json.dumps({"errors": [{"code": "UNKNOWN", "message": "injected fault"}]})
            self.send_response(r["status"])
            if "retry_after" in r:
                self.send_header("Retry-After", r["retry_after"])
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg.encode())
            self.note(r["status"])
            return
        conn = http.client.HTTPConnection(UPSTREAM, timeout=120)
        conn.request(method, self.path, body=data, headers=dict(self.headers.items()))
        resp = conn.getresponse()
        out = resp.read()
        conn.close()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in HOP:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(out)
        self.note(resp.status)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = handle_one


def main():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print("ready", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
