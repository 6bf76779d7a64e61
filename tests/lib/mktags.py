#!/usr/bin/env python3
"""Tag one manifest under many werf stage names in a registry (no auth), fast.

usage: mktags.py REGISTRY REPO SOURCE_TAG COUNT [--first N] [--extra TAG ...]

Names are SIGNATURE-UNIQUEID with SIGNATURE = sha224("stage-<i>") (56 hex) and UNIQUEID =
1600000000000 + i, for i in [first, first+COUNT). --extra adds non-stage tags (werf records,
foreign tags). One keep-alive connection; prints every stage name made, one per line.
"""
import hashlib
import http.client
import sys


def main():
    args = sys.argv[1:]
    extra = []
    first = 0
    if "--extra" in args:
        i = args.index("--extra")
        extra = args[i + 1:]
        args = args[:i]
    if "--first" in args:
        i = args.index("--first")
        first = int(args[i + 1])
        del args[i:i + 2]
    registry, repo, source, count = args[0], args[1], args[2], int(args[3])
    conn = http.client.HTTPConnection(registry, timeout=60)
    accept = ", ".join([
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    ])
    conn.request("GET", f"/v2/{repo}/manifests/{source}", headers={"Accept": accept})
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        sys.exit(f"mktags: GET manifest {source}: HTTP {resp.status}")
    ctype = resp.getheader("Content-Type")
    names = []
    for i in range(first, first + count):
        sig = hashlib.sha224(f"stage-{i}".encode()).hexdigest()
        names.append(f"{sig}-{1600000000000 + i}")
    for tag in names + extra:
        conn.request("PUT", f"/v2/{repo}/manifests/{tag}", body=body,
                     headers={"Content-Type": ctype})
        r = conn.getresponse()
        r.read()
        if r.status != 201:
            sys.exit(f"mktags: PUT {tag}: HTTP {r.status}")
    print("\n".join(names))


if __name__ == "__main__":
    main()
