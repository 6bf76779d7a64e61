#!/usr/bin/env python3
"""Make werf-like stage images as `docker save` archives, without a Docker build.

Test helper for stagefs (stdlib only). Two commands:

  mkstage.py stage --project P --out FILE|- [--seed S] [--layers N] [--layer-size BYTES]
                   [--parent-archive FILE] [--signature HEX56] [--uniqueid MS]
      Writes a `docker save` archive (manifest.json, <imageid>.json config, <n>/layer.tar)
      tagged werf-stages-storage/P:SIGNATURE-UNIQUEID and prints "STAGE IMAGE_ID" on stdout.
      With --parent-archive (a `docker save` archive of ONE image, the parent stage) the new
      image has the parent's layers and history followed by the new ones, like a werf chain.

  mkstage.py record --ref REPO:TAG --out FILE|- [--seed S] [--label K=V ...]
      An "empty" image (one empty layer, as `docker import` of nothing gives) with the given
      labels, as werf makes its managed-image / metadata / client-id records. Prints
      "REF IMAGE_ID".

Determinism: the same arguments always give the same bytes (so the same image ID). Layer
content comes from random.Random(f"{seed}/{layer}"), so it does not compress to nothing, and
does not depend on the project: the same seed in two projects shares its layer blobs.
The image ID printed is sha256 of the config bytes, which is what `docker load` keeps.
"""

import argparse
import hashlib
import io
import json
import os
import random
import re
import sys
import tarfile
import tempfile
import uuid

BASE_UNIQUEID_MS = 1600000000000  # 2020-09-13T12:26:40Z; UNIQUEID = base + seed*1000 + (seed*337)%1000
CHUNK = 1 << 20
WERF_VERSION = "v1.1.23"


def sha3_224(text):
    return hashlib.sha3_224(text.encode()).hexdigest()


def iso_time(ms):
    """Go RFC3339Nano form of a Unix time in ms, as Docker writes `created`."""
    import datetime

    t = datetime.datetime.fromtimestamp(ms // 1000, tz=datetime.timezone.utc)
    frac = ms % 1000
    s = t.strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        s += (".%03d" % frac).rstrip("0")
    return s + "Z"


class HashingWriter:
    """File wrapper that hashes and counts what is written."""

    def __init__(self, f):
        self.f = f
        self.h = hashlib.sha256()
        self.n = 0

    def write(self, b):
        self.h.update(b)
        self.n += len(b)
        return self.f.write(b)

    def flush(self):
        self.f.flush()


class RandomReader:
    """A read()-able stream of `size` deterministic pseudo-random bytes."""

    def __init__(self, rng, size):
        self.rng = rng
        self.left = size

    def read(self, n=-1):
        if n is None or n < 0 or n > self.left:
            n = self.left
        self.left -= n
        return self.rng.randbytes(n) if n else b""


def tarinfo(name, mtime, kind=tarfile.REGTYPE, size=0, mode=0o644, linkname=""):
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.size = size
    ti.mode = mode
    ti.mtime = mtime
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    ti.linkname = linkname
    return ti


def write_layer(path, seed, index, size, mtime):
    """Write layer `index` of stage `seed` as a tar at path. Returns its diff ID (sha256:...)."""
    top = "werf-test/s%s/l%d" % (seed, index)
    rng = random.Random("stagefs-test/%s/%d" % (seed, index))
    # a few files: split the payload into up to 3 files of (nearly) equal size
    nfiles = 0 if size <= 0 else min(3, max(1, size // (64 * 1024)))
    sizes = []
    if nfiles:
        each = size // nfiles
        sizes = [each] * nfiles
        sizes[-1] += size - each * nfiles
    with open(path, "wb") as raw:
        hw = HashingWriter(raw)
        with tarfile.open(fileobj=hw, mode="w|", format=tarfile.PAX_FORMAT) as tf:
            parts = top.split("/")
            for i in range(1, len(parts) + 1):
                tf.addfile(tarinfo("/".join(parts[:i]) + "/", mtime, tarfile.DIRTYPE, mode=0o755))
            readme = ("stagefs test stage seed=%s layer=%d bytes=%d\n" % (seed, index, size)).encode()
            tf.addfile(tarinfo(top + "/README", mtime, size=len(readme)), io.BytesIO(readme))
            for i, n in enumerate(sizes):
                tf.addfile(tarinfo("%s/data-%d.bin" % (top, i), mtime, size=n), RandomReader(rng, n))
            tf.addfile(tarinfo(top + "/latest", mtime, tarfile.SYMTYPE, mode=0o777, linkname="README"))
    return "sha256:" + hw.h.hexdigest()


def write_empty_layer(path):
    """An empty tar stream: 1024 zero bytes, the diff ID of `docker import` of nothing."""
    data = bytes(1024)
    with open(path, "wb") as f:
        f.write(data)
    return "sha256:" + hashlib.sha256(data).hexdigest()


def read_parent(archive):
    """(config dict, [(member name, diff id)]) of the single image in a `docker save` archive."""
    with tarfile.open(archive, "r:") as tf:
        manifest = json.load(tf.extractfile("manifest.json"))
        if len(manifest) != 1:
            raise SystemExit("mkstage: parent archive must hold exactly one image")
        m = manifest[0]
        config = json.load(tf.extractfile(m["Config"]))
        diff_ids = config["rootfs"]["diff_ids"]
        if len(diff_ids) != len(m["Layers"]):
            raise SystemExit("mkstage: parent archive: layers and diff_ids differ")
        return config, list(zip(m["Layers"], diff_ids))


def write_archive(out, config_bytes, repo_tags, layers, parent_archive=None):
    """Write a `docker save` archive. layers: [(source, diff_id)], where source is either
    ('file', path) or ('parent', member-name-in-parent-archive)."""
    image_hex = hashlib.sha256(config_bytes).hexdigest()
    mtime = 0
    names = []
    fout = sys.stdout.buffer if out == "-" else open(out, "wb")
    ptf = tarfile.open(parent_archive, "r:") if parent_archive else None
    try:
        with tarfile.open(fileobj=fout, mode="w|", format=tarfile.PAX_FORMAT) as tf:
            for i, (src, diff_id) in enumerate(layers):
                d = "%03d-%s" % (i, diff_id.split(":")[1][:12])
                name = d + "/layer.tar"
                names.append(name)
                tf.addfile(tarinfo(d + "/", mtime, tarfile.DIRTYPE, mode=0o755))
                if src[0] == "file":
                    with open(src[1], "rb") as lf:
                        size = os.fstat(lf.fileno()).st_size
                        tf.addfile(tarinfo(name, mtime, size=size), lf)
                else:
                    member = ptf.getmember(src[1])
                    tf.addfile(tarinfo(name, mtime, size=member.size), ptf.extractfile(member))
            cfg_name = image_hex + ".json"
            tf.addfile(tarinfo(cfg_name, mtime, size=len(config_bytes)), io.BytesIO(config_bytes))
            manifest = json.dumps([{"Config": cfg_name, "RepoTags": repo_tags, "Layers": names}]).encode()
            tf.addfile(tarinfo("manifest.json", mtime, size=len(manifest)), io.BytesIO(manifest))
    finally:
        if ptf:
            ptf.close()
        if out != "-":
            fout.close()
        else:
            fout.flush()
    return "sha256:" + image_hex


def config_json(labels, created_ms, diff_ids, history, base_config=None):
    cfg = {
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["/bin/sh"],
    }
    if base_config:
        cfg = {k: v for k, v in base_config.items() if k != "Labels"}
    cfg["Labels"] = labels
    doc = {
        "architecture": "amd64",
        "config": cfg,
        "created": iso_time(created_ms),
        "history": history,
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


PROJECT_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def cmd_stage(a):
    if not PROJECT_RE.match(a.project) or len(a.project) > 50:
        raise SystemExit("mkstage: %r is not a werf project name" % a.project)
    seed = str(a.seed)
    try:
        seed_num = int(seed)
    except ValueError:
        seed_num = int(hashlib.sha256(seed.encode()).hexdigest()[:8], 16) % 1000000
    signature = a.signature or sha3_224("stagefs-test/signature/%s/%s" % (a.project, seed))
    if len(signature) != 56 or any(c not in "0123456789abcdef" for c in signature):
        raise SystemExit("mkstage: signature must be 56 lowercase hex chars")
    uniqueid = a.uniqueid if a.uniqueid is not None else BASE_UNIQUEID_MS + seed_num * 1000 + (seed_num * 337) % 1000
    stage = "%s-%d" % (signature, uniqueid)
    mtime = uniqueid // 1000

    labels = {
        "werf": a.project,
        "werf-version": WERF_VERSION,
        "werf-cache-version": "1.1",
        "werf-image": "false",
        "werf-stage-signature": signature,
        "werf-docker-image-name": str(uuid.UUID(bytes=hashlib.sha256(("uuid/" + stage).encode()).digest()[:16], version=4)),
        "werf-stage-content-signature": sha3_224("stagefs-test/content/%s/%s" % (a.project, seed)),
        "werf-project-repo-commit": hashlib.sha1(("commit/" + seed).encode()).hexdigest(),
    }

    layers, history, base_config = [], [], None
    if a.parent_archive:
        pconfig, players = read_parent(a.parent_archive)
        layers = [(("parent", member), diff_id) for member, diff_id in players]
        history = list(pconfig.get("history", []))
        base_config = pconfig.get("config")

    workdir = tempfile.mkdtemp(prefix="mkstage-", dir=a.workdir)
    try:
        first = len(layers)
        for i in range(a.layers):
            p = os.path.join(workdir, "layer%d.tar" % i)
            diff_id = write_layer(p, seed, first + i, a.layer_size, mtime)
            layers.append((("file", p), diff_id))
            history.append({"created": iso_time(uniqueid), "created_by": "/bin/sh -c #(nop) werf stage %s layer %d" % (signature[:12], first + i)})
        config = config_json(labels, uniqueid, [d for _, d in layers], history, base_config)
        image_id = write_archive(a.out, config, ["werf-stages-storage/%s:%s" % (a.project, stage)], layers, a.parent_archive)
    finally:
        for f in os.listdir(workdir):
            os.unlink(os.path.join(workdir, f))
        os.rmdir(workdir)
    print("%s %s" % (stage, image_id), file=sys.stderr if a.out == "-" else sys.stdout)
    if a.info:
        with open(a.info, "w") as f:
            f.write("%s %s\n" % (stage, image_id))


def cmd_record(a):
    labels = {}
    for kv in a.label:
        k, sep, v = kv.partition("=")
        if not sep:
            raise SystemExit("mkstage: --label wants K=V")
        labels[k] = v
    seed = str(a.seed)
    created = BASE_UNIQUEID_MS + (int(hashlib.sha256((a.ref + seed).encode()).hexdigest()[:6], 16) % 100000) * 1000
    workdir = tempfile.mkdtemp(prefix="mkstage-", dir=a.workdir)
    try:
        p = os.path.join(workdir, "empty.tar")
        diff_id = write_empty_layer(p)
        cfg = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}
        cfg["Labels"] = labels if labels else None
        doc = {
            "architecture": "amd64",
            "comment": "Imported from -",
            "config": cfg,
            "created": iso_time(created),
            "history": [{"created": iso_time(created), "comment": "Imported from -"}],
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
        config = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        image_id = write_archive(a.out, config, [a.ref], [(("file", p), diff_id)])
    finally:
        for f in os.listdir(workdir):
            os.unlink(os.path.join(workdir, f))
        os.rmdir(workdir)
    print("%s %s" % (a.ref, image_id), file=sys.stderr if a.out == "-" else sys.stdout)
    if a.info:
        with open(a.info, "w") as f:
            f.write("%s %s\n" % (a.ref, image_id))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("stage")
    s.add_argument("--project", required=True)
    s.add_argument("--seed", default="1")
    s.add_argument("--layers", type=int, default=2)
    s.add_argument("--layer-size", type=int, default=64 * 1024)
    s.add_argument("--parent-archive")
    s.add_argument("--signature")
    s.add_argument("--uniqueid", type=int)
    s.add_argument("--out", required=True, help="archive path, or - for stdout")
    s.add_argument("--info", help="also write 'STAGE IMAGE_ID' to this file")
    s.add_argument("--workdir", help="where to put temporary layer tars")
    r = sub.add_parser("record")
    r.add_argument("--ref", required=True)
    r.add_argument("--seed", default="1")
    r.add_argument("--label", action="append", default=[])
    r.add_argument("--out", required=True)
    r.add_argument("--info")
    r.add_argument("--workdir")
    a = ap.parse_args()
    if a.cmd == "stage":
        if a.layers < 0 or a.layer_size < 0:
            raise SystemExit("mkstage: --layers and --layer-size must be >= 0")
        cmd_stage(a)
    else:
        cmd_record(a)


if __name__ == "__main__":
    main()
