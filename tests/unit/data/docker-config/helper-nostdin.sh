#!/bin/sh
# Fake credential helper that exits at once without reading its stdin (docker-credential-nostdin).
exit 1
