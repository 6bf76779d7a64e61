#!/usr/bin/env python3
"""A fake Docker Engine on a unix socket, and the image exports it serves (stdlib only).

For what the test machine's real dockerd (20.10) cannot show: a Docker 29 that refuses old
API versions, the OCI-style exports of Docker 25-28, and the containerd image store, whose
image ID is a manifest or index digest and whose layers are the compressed blobs as stored.

  fake_engine.py build FORM --project P --seed S --out DIR
      Writes DIR/archive.tar (what GET /images/{ref}/get sends) and DIR/image.json (what the
      engine says of the image, and the values a test expects). FORM:
        classic           Docker <= 24 `docker save`: HEX.json, DIR/layer.tar; the repeated
                          layer's second copy is a symlink ../DIR1/layer.tar (what 20.10 writes)
        classic-hardlink  the same with a hard link entry for the second copy
        oci-classic       Docker 25-28, classic store: blobs/sha256/*, index.json, manifest.json
                          pointing into blobs/ (a repeated layer is listed twice, stored once)
        oci-legacy-links  legacy folders whose layer.tar are symlinks into blobs/ (manifest.json
                          names the legacy paths)
        containerd-index  Docker 29, containerd store: Id = an OCI index digest; the index has
                          the image manifest and an attestation manifest; layers gzip, zstd, gzip
        containerd-manifest  Id = an image manifest digest (Docker media types, gzip layers)
      Every form holds the layers [A, B, A]. image.json: ref, stage, id (Docker's image ID),
      config (config digest), labels, manifest (the stored manifest's digest, containerd forms),
      layers [{digest, size, mediaType}] as the stage's manifest must list them.

  fake_engine.py serve --socket PATH --api 1.52 --min-api 1.44 [--log FILE] DIR...
      Serves GET /version (unversioned too), /vX.Y/images/json, /vX.Y/images/{ref}/json and
      /vX.Y/images/{ref}/get for the images built in DIR...; a version outside [min, api] gets
      400 {"message": "client version X.Y is too old. Minimum supported API version is ..."}
      as Docker 29 answers. --min-api - : /version has no MinAPIVersion (daemons before 1.25).
      Each request line is appended to --log.
"""

import argparse
import fnmatch
import gzip
import hashlib
import http.server
import io
import json
import os
import random
import socketserver
import sys
import tarfile
import urllib.parse

MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_TAR = "application/vnd.oci.image.layer.v1.tar"
MT_OCI_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def jbytes(doc):
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def layer_tar(seed, name, size):
    """A small deterministic layer tar."""
    rng = random.Random("fake-engine/%s/%s" % (seed, name))
    data = rng.randbytes(size)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("fake/%s/%s.bin" % (seed, name))
        ti.size, ti.mtime, ti.mode = len(data), 1600000000, 0o644
        tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def zstd_frame(data):
    """A valid zstd frame of raw (stored) blocks: magic, no content size, 128 KiB window."""
    out = bytearray(b"\x28\xb5\x2f\xfd\x00\x38")
    blocks = [data[i:i + 131072] for i in range(0, len(data), 131072)] or [b""]
    for i, b in enumerate(blocks):
        last = 1 if i == len(blocks) - 1 else 0
        out += ((len(b) << 3) | last).to_bytes(3, "little") + b
    return bytes(out)


def gz(data):
    return gzip.compress(data, mtime=0)


class Archive:
    def __init__(self):
        self.buf = io.BytesIO()
        self.tf = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)

    def _info(self, name, kind=tarfile.REGTYPE, size=0, link=""):
        ti = tarfile.TarInfo(name)
        ti.type, ti.size, ti.linkname, ti.mtime = kind, size, link, 0
        ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
        return ti

    def dir(self, name):
        self.tf.addfile(self._info(name + "/", tarfile.DIRTYPE))

    def file(self, name, data):
        self.tf.addfile(self._info(name, size=len(data)), io.BytesIO(data))

    def link(self, name, target, hard=False):
        self.tf.addfile(self._info(name, tarfile.LNKTYPE if hard else tarfile.SYMTYPE, link=target))

    def blob(self, data):
        self.file("blobs/sha256/" + sha(data)[7:], data)

    def close(self):
        self.tf.close()
        return self.buf.getvalue()


def build(form, project, seed, out):
    sig = hashlib.sha3_224(("fake-engine/%s/%s/%s" % (form, project, seed)).encode()).hexdigest()
    uniqueid = 1600000000000 + int(hashlib.sha256(form.encode()).hexdigest()[:6], 16) % 100000 * 1000
    stage = "%s-%d" % (sig, uniqueid)
    ref = "werf-stages-storage/%s:%s" % (project, stage)
    labels = {"werf": project, "werf-cache-version": "1.1", "werf-stage-signature": sig}
    a, b = layer_tar(seed, "A", 3000), layer_tar(seed, "B", 1000)
    diff_ids = [sha(a), sha(b), sha(a)]
    config = jbytes({"architecture": "amd64", "os": "linux", "config": {"Labels": labels},
                     "created": "2020-09-13T12:26:40Z",
                     "rootfs": {"type": "layers", "diff_ids": diff_ids}})
    cfg = sha(config)
    ar = Archive()
    info = {"ref": ref, "stage": stage, "labels": labels, "config": cfg, "form": form}
    tar_layers = [{"digest": d, "size": len(x), "mediaType": MT_OCI_TAR}
                  for d, x in zip(diff_ids, [a, b, a])]
    if form in ("classic", "classic-hardlink"):
        dirs = ["%064x" % (i + 1) for i in range(3)]
        dirs[2] = "0" * 64  # sorts first: the link comes before its target
        for d in sorted(dirs):
            ar.dir(d)
            ar.file(d + "/VERSION", b"1.0")
            if d == dirs[2]:
                target = dirs[0] + "/layer.tar"
                ar.link(d + "/layer.tar", target if form == "classic-hardlink" else "../" + target,
                        hard=form == "classic-hardlink")
            else:
                ar.file(d + "/layer.tar", a if d == dirs[0] else b)
        ar.file(cfg[7:] + ".json", config)
        ar.file("manifest.json", jbytes([{"Config": cfg[7:] + ".json", "RepoTags": [ref],
                                          "Layers": [d + "/layer.tar" for d in dirs]}]))
        if form == "classic-hardlink":
            # the hard link comes after its target in a real archive: move it to the end
            ar = Archive()
            for d in [dirs[0], dirs[1]]:
                ar.dir(d)
                ar.file(d + "/layer.tar", a if d == dirs[0] else b)
            ar.dir(dirs[2])
            ar.link(dirs[2] + "/layer.tar", dirs[0] + "/layer.tar", hard=True)
            ar.file(cfg[7:] + ".json", config)
            ar.file("manifest.json", jbytes([{"Config": cfg[7:] + ".json", "RepoTags": [ref],
                                              "Layers": [d + "/layer.tar" for d in dirs]}]))
        info.update(id=cfg, layers=tar_layers)
    elif form in ("oci-classic", "oci-legacy-links"):
        man = jbytes({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                      "config": {"mediaType": MT_OCI_CONFIG, "digest": cfg, "size": len(config)},
                      "layers": []})
        ar.dir("blobs")
        ar.dir("blobs/sha256")
        for x in (a, b, config, man):
            ar.blob(x)
        names = ["blobs/sha256/" + d[7:] for d in diff_ids]
        if form == "oci-legacy-links":
            legacy = ["%064x" % (i + 100) for i in range(3)]
            for d, n in zip(legacy, names):
                ar.dir(d)
                ar.link(d + "/layer.tar", "../" + n)
            names = [d + "/layer.tar" for d in legacy]
        ar.file("index.json", jbytes({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [
            {"mediaType": MT_OCI_MANIFEST, "digest": sha(man), "size": len(man),
             "annotations": {"io.containerd.image.name": "docker.io/" + ref,
                             "org.opencontainers.image.ref.name": stage}}]}))
        ar.file("manifest.json", jbytes([{"Config": "blobs/sha256/" + cfg[7:], "RepoTags": [ref],
                                          "Layers": names}]))
        ar.file("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        info.update(id=cfg, layers=tar_layers)
    elif form in ("containerd-index", "containerd-manifest"):
        docker = form == "containerd-manifest"
        blobs = [gz(a), gz(b) if docker else zstd_frame(b), gz(a)]
        mts = [MT_DOCKER_GZIP] * 3 if docker else [MT_OCI_GZIP, MT_OCI_ZSTD, MT_OCI_GZIP]
        layers = [{"mediaType": m, "digest": sha(x), "size": len(x)} for m, x in zip(mts, blobs)]
        man = jbytes({"schemaVersion": 2, "mediaType": MT_DOCKER_MANIFEST if docker else MT_OCI_MANIFEST,
                      "config": {"mediaType": MT_DOCKER_CONFIG if docker else MT_OCI_CONFIG,
                                 "digest": cfg, "size": len(config)}, "layers": layers})
        ar.dir("blobs")
        ar.dir("blobs/sha256")
        for x in blobs[:2] + [config, man]:
            ar.blob(x)
        top = man
        if not docker:
            stmt = b'{"_type":"https://in-toto.io/Statement/v0.1"}'
            att_cfg = b'{"architecture":"unknown","os":"unknown","rootfs":{"type":"layers","diff_ids":[]}}'
            att = jbytes({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                          "config": {"mediaType": MT_OCI_CONFIG, "digest": sha(att_cfg), "size": len(att_cfg)},
                          "layers": [{"mediaType": "application/vnd.in-toto+json", "digest": sha(stmt),
                                      "size": len(stmt)}]})
            # the attestation comes first in the index: it must be skipped, not taken
            top = jbytes({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [
                {"mediaType": MT_OCI_MANIFEST, "digest": sha(att), "size": len(att),
                 "platform": {"architecture": "unknown", "os": "unknown"},
                 "annotations": {"vnd.docker.reference.digest": sha(man),
                                 "vnd.docker.reference.type": "attestation-manifest"}},
                {"mediaType": MT_OCI_MANIFEST, "digest": sha(man), "size": len(man),
                 "platform": {"architecture": "amd64", "os": "linux"}}]})
            for x in (stmt, att_cfg, att, top):
                ar.blob(x)
        ar.file("index.json", jbytes({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [
            {"mediaType": MT_DOCKER_MANIFEST if docker else MT_OCI_INDEX, "digest": sha(top),
             "size": len(top), "annotations": {"io.containerd.image.name": "docker.io/" + ref,
                                               "org.opencontainers.image.ref.name": stage}}]}))
        ar.file("manifest.json", jbytes([{"Config": "blobs/sha256/" + cfg[7:], "RepoTags": [ref],
                                          "Layers": ["blobs/sha256/" + l["digest"][7:] for l in layers]}]))
        ar.file("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        info.update(id=sha(top), manifest=sha(man), manifest_media_type=(
            MT_DOCKER_MANIFEST if docker else MT_OCI_MANIFEST), layers=layers)
    else:
        raise SystemExit("fake_engine: unknown form %s" % form)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "archive.tar"), "wb") as f:
        f.write(ar.close())
    with open(os.path.join(out, "image.json"), "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)
    print("%s %s" % (stage, info["id"]))


def vtuple(v):
    a, _, b = v.partition(".")
    return (int(a), int(b or 0))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, ctype="application/json"):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Api-Version", self.server.api)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        srv = self.server
        if srv.log:
            with open(srv.log, "a") as f:
                f.write(self.path + "\n")
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        query = urllib.parse.parse_qs(url.query)
        if path.startswith("/v") and "/" in path[1:]:
            ver, path = path[2:].split("/", 1)
            path = "/" + path
            try:
                vt = vtuple(ver)
            except ValueError:
                return self.reply(400, {"message": "invalid API version %s" % ver})
            if srv.min_api and vt < vtuple(srv.min_api):
                return self.reply(400, {"message": "client version %s is too old. Minimum supported API "
                                        "version is %s, please upgrade your client to a newer version"
                                        % (ver, srv.min_api)})
            if vt > vtuple(srv.api):
                return self.reply(400, {"message": "client version %s is too new. Maximum supported API "
                                        "version is %s" % (ver, srv.api)})
        if path == "/version":
            doc = {"ApiVersion": srv.api, "Version": "29.0.0", "Os": "linux", "Arch": "amd64"}
            if srv.min_api:
                doc["MinAPIVersion"] = srv.min_api
            return self.reply(200, doc)
        if path == "/images/json":
            filters = json.loads(query.get("filters", ["{}"])[0])
            out = []
            for im in srv.images.values():
                if any(not fnmatch.fnmatch(im["ref"], r) and not fnmatch.fnmatch(im["ref"].split(":")[0], r)
                       for r in filters.get("reference", [])):
                    continue
                if any(im["labels"].get(l.split("=")[0]) != l.split("=", 1)[1] if "=" in l
                       else l not in im["labels"] for l in filters.get("label", [])):
                    continue
                out.append({"Id": im["id"], "RepoTags": [im["ref"]], "RepoDigests": [],
                            "Labels": im["labels"], "Containers": -1, "Size": 1, "SharedSize": -1})
            return self.reply(200, out)
        if path.startswith("/images/") and (path.endswith("/json") or path.endswith("/get")):
            name = path[len("/images/"):path.rindex("/")]
            im = srv.images.get(name) or next((i for i in srv.images.values() if i["id"] == name), None)
            if not im:
                return self.reply(404, {"message": "No such image: %s" % name})
            if path.endswith("/json"):
                doc = {"Id": im["id"], "RepoTags": [im["ref"]], "Config": {"Labels": im["labels"]},
                       "Os": "linux", "Architecture": "amd64"}
                if im["form"].startswith("containerd"):
                    doc["Descriptor"] = {"mediaType": MT_OCI_INDEX if im["form"] == "containerd-index"
                                         else MT_DOCKER_MANIFEST, "digest": im["id"]}
                return self.reply(200, doc)
            with open(im["archive"], "rb") as f:
                return self.reply(200, f.read(), "application/x-tar")
        return self.reply(404, {"message": "page not found"})


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        conn, _ = super().get_request()
        return conn, ("local", 0)


def serve(a):
    if os.path.exists(a.socket):
        os.unlink(a.socket)
    srv = Server(a.socket, Handler)
    srv.api, srv.min_api, srv.log = a.api, None if a.min_api == "-" else a.min_api, a.log
    srv.images = {}
    for d in a.dirs:
        with open(os.path.join(d, "image.json")) as f:
            im = json.load(f)
        im["archive"] = os.path.join(d, "archive.tar")
        srv.images[im["ref"]] = im
    srv.serve_forever()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("form")
    b.add_argument("--project", required=True)
    b.add_argument("--seed", default="1")
    b.add_argument("--out", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--socket", required=True)
    s.add_argument("--api", default="1.52")
    s.add_argument("--min-api", default="1.44")
    s.add_argument("--log")
    s.add_argument("dirs", nargs="*")
    a = ap.parse_args()
    if a.cmd == "build":
        build(a.form, a.project, a.seed, a.out)
    else:
        serve(a)


if __name__ == "__main__":
    sys.exit(main())
