#!/bin/sh
set -e
echo "hello"

exit 0
