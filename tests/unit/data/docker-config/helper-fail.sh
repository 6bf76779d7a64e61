#!/bin/sh
# Fake credential helper that knows nothing (docker-credential-fail): reads the request, exits 1.
cat >/dev/null
echo "credentials not found in native keychain"
exit 1
