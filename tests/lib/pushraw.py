#!/usr/bin/env python3
"""Push an image to a registry over its HTTP API exactly as written here, with no tool
normalizing it on the way: an OCI image manifest or an OCI image index WITHOUT the top-level
"mediaType" field (the OCI spec makes it optional; some tools omit it), or a Docker schema 2
manifest (which always has it). Each image has a config and one gzip layer, deterministic for
a SEED. The manifest is PUT with the Content-Type of its kind.

usage: pushraw.py REGISTRY_HOST:PORT REPO TAG KIND SEED [USER:PASSWORD]
KIND: oci | oci-index | docker. Prints the digest of the top-level manifest.
"""
import base64
import gzip
import hashlib
import io
import json
import random
import sys
import tarfile
import urllib.error
import urllib.request

HOST, REPO, TAG, KIND, SEED = sys.argv[1:6]
AUTH = sys.argv[6] if len(sys.argv) > 6 else None


def call(method, url, data=None, ctype=None):
    req = urllib.request.Request(url if url.startswith("http") else "http://%s%s" % (HOST, url),
                                 data=data, method=method)
    if ctype:
        req.add_header("Content-Type", ctype)
    if AUTH:
        req.add_header("Authorization", "Basic " + base64.b64encode(AUTH.encode()).decode())
    try:
        return urllib.request.urlopen(req, timeout=60)
    except urllib.error.HTTPError as e:
        sys.exit("%s %s: %d %s" % (method, url, e.code, e.read()[:300]))


def blob(data):
    dig = "sha256:" + hashlib.sha256(data).hexdigest()
    loc = call("POST", "/v2/%s/blobs/uploads/" % REPO).headers["Location"]
    sep = "&" if "?" in loc else "?"
    call("PUT", "%s%sdigest=%s" % (loc, sep, dig), data, "application/octet-stream")
    return dig, len(data)


def image(arch, docker):
    rnd = random.Random("%s/%s" % (SEED, arch))
    content = rnd.randbytes(30000)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as t:
        info = tarfile.TarInfo("opt/%s.bin" % arch)
        info.size = len(content)
        info.mtime = 1600000000
        t.addfile(info, io.BytesIO(content))
    raw = raw.getvalue()
    ldig, lsize = blob(gzip.compress(raw, mtime=0))
    config = {"architecture": arch, "os": "linux", "config": {"Labels": {"werf": "raw"}},
              "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]}}
    cdig, csize = blob(json.dumps(config, sort_keys=True).encode())
    if docker:
        return {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                           "digest": cdig, "size": csize},
                "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                            "digest": ldig, "size": lsize}]}
    return {"schemaVersion": 2,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdig, "size": csize},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ldig, "size": lsize}]}


def put_manifest(ref, doc, ctype):
    data = json.dumps(doc).encode()
    call("PUT", "/v2/%s/manifests/%s" % (REPO, ref), data, ctype)
    return "sha256:" + hashlib.sha256(data).hexdigest(), len(data)


def main():
    oci_m = "application/vnd.oci.image.manifest.v1+json"
    if KIND == "oci":
        dig, _ = put_manifest(TAG, image("amd64", False), oci_m)
    elif KIND == "docker":
        dig, _ = put_manifest(TAG, image("amd64", True),
                              "application/vnd.docker.distribution.manifest.v2+json")
    elif KIND == "oci-index":
        children = []
        for arch in ("amd64", "arm64"):
            m = image(arch, False)
            mdig, msize = put_manifest(
                "sha256:" + hashlib.sha256(json.dumps(m).encode()).hexdigest(), m, oci_m)
            children.append({"mediaType": oci_m, "digest": mdig, "size": msize,
                             "platform": {"architecture": arch, "os": "linux"}})
        dig, _ = put_manifest(TAG, {"schemaVersion": 2, "manifests": children},
                              "application/vnd.oci.image.index.v1+json")
    else:
        sys.exit("unknown KIND " + KIND)
    print(dig)


if __name__ == "__main__":
    main()
