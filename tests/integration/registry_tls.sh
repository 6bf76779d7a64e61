#!/usr/bin/env bash
# TLS: verified by default; -o insecure for self-signed certificates or plain HTTP. Loopback
# addresses may use HTTP as Docker allows, so this test gives the registry a name that is not
# loopback ("registry.test", in a private mount namespace's /etc/hosts) and a certificate
# from its own CA, which it adds to the system bundle (also privately) for the verified case.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
h_init
h_start_registry --var PLAIN
STAGE="$(printf 'a%.0s' {1..56})-1600000000789"
python3 "$H_LIB/mkindex.py" "$H_TMP/src" 71 >/dev/null
skopeo copy -q --override-arch amd64 --dest-tls-verify=false "oci:$H_TMP/src" "docker://$PLAIN/tls/stages:$STAGE"

# A CA and a server certificate for registry.test.
pki=$H_TMP/pki
mkdir -p "$pki"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=stagefs test CA" \
	-keyout "$pki/ca.key" -out "$pki/ca.pem" >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -subj "/CN=registry.test" -keyout "$pki/srv.key" \
	-out "$pki/srv.csr" >/dev/null 2>&1
printf 'subjectAltName=DNS:registry.test\n' >"$pki/ext"
openssl x509 -req -in "$pki/srv.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial \
	-days 30 -extfile "$pki/ext" -out "$pki/srv.pem" >/dev/null 2>&1
cat /etc/ssl/certs/ca-certificates.crt "$pki/ca.pem" >"$pki/bundle.crt"

# A second registry process serving the same storage over TLS.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$H_TMP/tls.yml" <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: $H_REGISTRY_DIR
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  tls:
    certificate: $pki/srv.pem
    key: $pki/srv.key
YML
env -u REGISTRY /usr/bin/docker-registry serve "$H_TMP/tls.yml" >"$H_TMP/log/tls-registry.log" 2>&1 &
h_on_cleanup "kill $! 2>/dev/null || true"
h_wait_for 30 curl -sk -o /dev/null "https://127.0.0.1:$port/v2/"
plain_port=${PLAIN#*:}

cp /etc/hosts "$H_TMP/hosts"
echo "127.0.0.1 registry.test" >>"$H_TMP/hosts"
bin=$(_h_stagefs_bin)
cat >"$H_TMP/inner.sh" <<INNER
set -euo pipefail
mount --bind "$H_TMP/hosts" /etc/hosts
try() { # EXPECT(ok|fail) WHAT STORAGE [OPTIONS...]: mount, list, unmount
	local want=\$1 what=\$2 storage=\$3 mnt=$H_TMP/m out rc=0
	shift 3
	mkdir -p "\$mnt"
	${STAGEFS_WRAP:-} "$bin" -f -o cache_dir=$H_TMP/c "\$@" "\$storage" "\$mnt" >"$H_TMP/log/inner.log" 2>&1 &
	local pid=\$!
	for i in \$(seq 100); do mountpoint -q "\$mnt" && break; kill -0 \$pid 2>/dev/null || break; sleep 0.1; done
	if mountpoint -q "\$mnt"; then
		out=\$(ls "\$mnt")
		fusermount3 -u "\$mnt"
		wait \$pid || { echo "FAIL \$what: daemon exit status \$?"; exit 1; }
		[ "\$want" = ok ] || { echo "FAIL \$what: mounted, expected a refusal"; exit 1; }
		[ "\$out" = "$STAGE" ] || { echo "FAIL \$what: listed '\$out'"; exit 1; }
	else
		wait \$pid || rc=\$?
		[ "\$want" = fail ] || { echo "FAIL \$what: \$(cat $H_TMP/log/inner.log)"; exit 1; }
		[ "\$rc" = 1 ] || { echo "FAIL \$what: exit status \$rc"; exit 1; }
		grep -q "\$EXPECT_MSG" "$H_TMP/log/inner.log" || { echo "FAIL \$what: \$(cat $H_TMP/log/inner.log)"; exit 1; }
	fi
	echo "ok \$what"
}
EXPECT_MSG="SSL certificate problem.*use -o insecure" try fail "self-signed TLS is refused by default" registry.test:$port/tls/stages
try ok "-o insecure accepts the unverified certificate" registry.test:$port/tls/stages -o insecure
EXPECT_MSG="unreachable" try fail "plain HTTP is refused for a non-loopback name" registry.test:$plain_port/tls/stages
try ok "-o insecure allows plain HTTP" registry.test:$plain_port/tls/stages -o insecure
mount --bind "$pki/bundle.crt" /etc/ssl/certs/ca-certificates.crt
try ok "a certificate from a trusted CA is verified" registry.test:$port/tls/stages
INNER
unshare -m --propagation private bash "$H_TMP/inner.sh" >"$H_TMP/inner.out" 2>&1 || {
	cat "$H_TMP/inner.out" >&2
	h_fail "TLS checks failed"
}
while read -r line; do h_pass "${line#ok }"; done <"$H_TMP/inner.out"
