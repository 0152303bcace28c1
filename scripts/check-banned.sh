#!/bin/sh
# check-banned.sh - fails when project C code calls a libc function we
# do not use (unbounded copies and formatting, non-reentrant tokenizing).
set -e
cd "$(dirname "$0")/.."
pattern='\b(sprintf|vsprintf|strcpy|strcat|strtok|gets|strncpy|atoi|atol)[[:space:]]*\('
if grep -rnE "$pattern" src tests/unit tests/fuzz --include='*.c' --include='*.h' | grep -v 'check-banned: ok'; then
    echo "check-banned: the calls above are banned (use snprintf, memcpy with checked lengths, strtol...)" >&2
    exit 1
fi
echo "check-banned: ok"
