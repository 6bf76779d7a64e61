#!/usr/bin/env python3
"""Write an OCI image layout whose index.json names one image INDEX (two platforms).

usage: mkindex.py DIR SEED

Each platform image has an OCI config (werf-like labels) and one gzip layer; the layout's
top-level index.json points at the image index. Deterministic for a given SEED. Prints the
digest of the image index. Used to push a multi-platform stage with `skopeo copy --all`.
"""
import gzip
import hashlib
import io
import json
import os
import random
import sys
import tarfile


def blob(root, data):
    h = hashlib.sha256(data).hexdigest()
    with open(os.path.join(root, "blobs", "sha256", h), "wb") as f:
        f.write(data)
    return "sha256:" + h, len(data)


def layer(seed, arch):
    rnd = random.Random(f"{seed}/{arch}")
    content = rnd.randbytes(50000)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as t:
        info = tarfile.TarInfo(f"opt/{arch}.bin")
        info.size = len(content)
        info.mtime = 1600000000
        t.addfile(info, io.BytesIO(content))
    raw = raw.getvalue()
    return raw, gzip.compress(raw, mtime=0)


def main():
    root, seed = sys.argv[1], sys.argv[2]
    os.makedirs(os.path.join(root, "blobs", "sha256"), exist_ok=True)
    manifests = []
    for arch in ("amd64", "arm64"):
        raw, gz = layer(seed, arch)
        ldig, lsize = blob(root, gz)
        config = {
            "architecture": arch, "os": "linux",
            "config": {"Labels": {"werf": "multi", "werf-cache-version": "1.1"}},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]},
        }
        cdig, csize = blob(root, json.dumps(config, sort_keys=True).encode())
        man = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdig, "size": csize},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ldig, "size": lsize}],
        }
        mdig, msize = blob(root, json.dumps(man).encode())
        manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdig,
                          "size": msize, "platform": {"architecture": arch, "os": "linux"}})
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}
    idig, isize = blob(root, json.dumps(index).encode())
    with open(os.path.join(root, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json", "digest": idig, "size": isize}]}, f)
    with open(os.path.join(root, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    print(idig)


if __name__ == "__main__":
    main()
