#!/usr/bin/env bash
# The main job: build and install Bastion with its LangGraph integration, then run
# a customer-support agent guarded end to end (examples/support_agent.py: policies,
# PII redaction, approvals, a budget that downgrades and then stops the model, SLOs,
# the hash-chained ledger verified), and read its ledger back with the CLI.
source "$(dirname "$0")/_env.sh"
install_package frames,langgraph
DEMO_DIR="${BASTION_DEMO_DIR:-$ROOT/build/demo}"
rm -rf "$DEMO_DIR"
"$VENV/bin/python" examples/support_agent.py "$DEMO_DIR"
echo
echo "== bastion ledger query --effect deny (the CLI, reading the ledger the agent wrote)"
"$VENV/bin/bastion" ledger query "$DEMO_DIR/ledger" --effect deny
echo
echo "The notebook examples/notebooks/audit.ipynb audits this ledger: BASTION_DEMO_DIR=$DEMO_DIR"
