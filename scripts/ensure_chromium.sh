#!/usr/bin/env bash
# Ensure Debian's Chromium is installed at /usr/bin/chromium. The pytest-playwright
# fixtures launch it as executable_path (tests/conftest.py, browser_type_launch_args),
# because Playwright cannot download its own browsers on the closed CI network:
# nothing here runs `playwright install`. Idempotent.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [[ ! -x "$CHROMIUM" ]]; then
    echo "ensure_chromium: $CHROMIUM missing, installing Debian package 'chromium'..." >&2
    SUDO=""
    if [[ "$(id -u)" -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            SUDO="sudo"
        else
            echo "ensure_chromium: ERROR: not root and sudo unavailable; cannot install chromium" >&2
            exit 1
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update; then
        echo "ensure_chromium: ERROR: apt-get update failed" >&2
        exit 1
    fi
    if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; then
        echo "ensure_chromium: ERROR: apt-get install chromium failed" >&2
        exit 1
    fi
fi

if [[ ! -x "$CHROMIUM" ]]; then
    echo "ensure_chromium: ERROR: $CHROMIUM still missing after install" >&2
    exit 1
fi

if ! "$CHROMIUM" --version; then
    echo "ensure_chromium: ERROR: $CHROMIUM --version failed" >&2
    exit 1
fi
