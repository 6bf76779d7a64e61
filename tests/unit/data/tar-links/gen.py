#!/usr/bin/env python3
"""Generate the link archives of test_tar.c (test_links) and their .expect files.

Each ARCHIVE.tar has ARCHIVE.expect, one line per callback of a reader with a link callback:

    file<TAB>NAME<TAB>SIZE<TAB>SHA256      a regular file, delivered whole
    link<TAB>NAME<TAB>TARGET<TAB>sym|hard  a symbolic or hard link entry, target as written
    end<TAB>ok

The archives are the link forms found in `docker save` output and in the tools that write
such archives: Docker 20.10 writes a repeated layer as ID2/layer.tar -> ../ID1/layer.tar
(the link may come before its target: entries follow the names' order); tar of a folder with
hard-linked files writes hard links; long targets need GNU 'K' entries or pax linkpath records.
Expectations come from Python's tarfile reading the same bytes (checked here).
"""
import hashlib
import io
import os
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))


def info(name, type_=tarfile.REGTYPE, size=0, linkname=""):
    ti = tarfile.TarInfo(name)
    ti.type = type_
    ti.size = size
    ti.linkname = linkname
    ti.mtime = 1589786063
    ti.mode = 0o755 if type_ == tarfile.DIRTYPE else 0o644
    return ti


def build(name, fmt, entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for e in entries:
            if e[0] == "dir":
                tf.addfile(info(e[1] + "/", tarfile.DIRTYPE))
            elif e[0] == "file":
                tf.addfile(info(e[1], size=len(e[2])), io.BytesIO(e[2]))
            else:
                tf.addfile(info(e[1], tarfile.SYMTYPE if e[0] == "sym" else tarfile.LNKTYPE,
                                linkname=e[2]))
    data = buf.getvalue()
    lines = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        for m in tf:
            if m.isreg():
                d = tf.extractfile(m).read()
                lines.append("file\t%s\t%d\t%s" % (m.name, len(d), hashlib.sha256(d).hexdigest()))
            elif m.issym() or m.islnk():
                lines.append("link\t%s\t%s\t%s" % (m.name, m.linkname, "sym" if m.issym() else "hard"))
    lines.append("end\tok")
    with open(os.path.join(HERE, name + ".tar"), "wb") as f:
        f.write(data)
    with open(os.path.join(HERE, name + ".expect"), "w") as f:
        f.write("\n".join(lines) + "\n")


A = b"layer A " * 300
B = b"layer B " * 100
ID1 = "1" * 64
ID2 = "0" * 64  # sorts before ID1: the link comes before its target
ID3 = "2" * 64

build("valid-docker-20.10-repeated", tarfile.GNU_FORMAT, [
    ("dir", ID2), ("file", ID2 + "/json", b"{}"), ("sym", ID2 + "/layer.tar", "../%s/layer.tar" % ID1),
    ("dir", ID1), ("file", ID1 + "/layer.tar", A),
    ("dir", ID3), ("file", ID3 + "/layer.tar", B),
    ("file", "manifest.json", b"[]"),
])
build("valid-hardlinks", tarfile.USTAR_FORMAT, [
    ("file", "blobs/sha256/" + "a" * 64, A),
    ("hard", "blobs/sha256/" + "b" * 64, "blobs/sha256/" + "a" * 64),
    ("hard", "x/layer.tar", "blobs/sha256/" + "a" * 64),
])
LONG = "deep/" * 30 + "layer.tar"
build("valid-long-target-gnu", tarfile.GNU_FORMAT, [
    ("file", LONG, B),
    ("sym", "short", "./" + LONG),
    ("hard", "h" * 120, LONG),
])
build("valid-long-target-pax", tarfile.PAX_FORMAT, [
    ("file", LONG, B),
    ("sym", "s" * 150, "../" + "t" * 200),
    ("hard", "hard", LONG),
    ("file", "after", b"x"),
])
