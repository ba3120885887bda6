"""The README's main job (examples/ledger_demo.py) runs end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import bastion

REPO = Path(__file__).resolve().parents[2]


def test_ledger_demo_runs_and_its_ledger_verifies(tmp_path: Path) -> None:
    path = tmp_path / "ledger"
    out = subprocess.run([sys.executable, str(REPO / "examples" / "ledger_demo.py"), str(path)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "verify: OK" in out.stdout
    assert "network-allowlist: domain mailer.evil.example is not in the allowlist" in out.stdout
    assert "A prompt as recorded (PII redacted by policy): 'Customer [EMAIL]" in out.stdout
    with bastion.Ledger.open(str(path), reader=True) as ledger:
        assert ledger.verify().ok
        records = list(ledger.query(limit=None))
        assert len(records) == ledger.head()["seq"] > 60
        assert all(r["policy_version"] for r in records if r["action"] != "approval")
        assert not any("@mail.example.com" in (r["input_summary"] or "") for r in records)
