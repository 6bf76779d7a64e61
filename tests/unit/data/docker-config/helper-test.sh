#!/bin/sh
# Fake Docker credential helper (copied to a temp dir on PATH as docker-credential-test).
# Protocol: `docker-credential-test get`, the server address on stdin, JSON on stdout.
if [ "$1" != get ]; then
	echo "unexpected action '$1'"
	exit 0
fi
server=$(cat)
case "$server" in
helper.example.com)
	printf '{"ServerURL":"helper.example.com","Username":"helperuser","Secret":"helpersecret"}\n' ;;
schemehelper.example.com)
	printf '{"Username":"schemeuser","Secret":"schemesecret"}' ;;
https://index.docker.io/v1/)
	printf '{"ServerURL":"https://index.docker.io/v1/","Username":"hubhelper","Secret":"hubsecret"}' ;;
token.example.com)
	printf '{"Username":"<token>","Secret":"helper-refresh-token"}' ;;
nouser.example.com)
	printf '{"Secret":"only-secret"}' ;;
notjson.example.com)
	echo 'this is not JSON' ;;
nosecret.example.com)
	printf '{"Username":"u"}' ;;
big.example.com)
	# More than the 64 KiB output cap.
	head -c 70000 /dev/zero | tr '\0' a ;;
*)
	echo "credentials not found in native keychain"
	exit 1 ;;
esac
