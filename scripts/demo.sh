#!/usr/bin/env bash
# The main job: build and install Bastion, then run the demo agent's ledger
# example end to end (writes records, verifies the chain, queries it).
source "$(dirname "$0")/_env.sh"
install_package frames
DEMO_DIR="${BASTION_DEMO_DIR:-$ROOT/build/demo}"
rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"
"$VENV/bin/python" examples/ledger_demo.py "$DEMO_DIR/ledger"
echo
echo "== bastion ledger stats (the CLI, reading the ledger the demo wrote)"
"$VENV/bin/bastion" ledger stats "$DEMO_DIR/ledger"
