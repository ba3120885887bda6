"""examples/notebooks/audit.ipynb runs, top to bottom, against the ledger that
examples/support_agent.py writes.

The notebook runs in a Jupyter kernel of this interpreter: ipykernel installs
its "python3" kernel spec into sys.prefix/share/jupyter/kernels, and
jupyter_client starts it with sys.executable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "examples" / "notebooks" / "audit.ipynb"


def test_audit_notebook_reads_the_support_agents_ledger(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("langgraph", "langchain", "matplotlib", "pandas", "ipykernel"):
        pytest.importorskip(module)
    # The kernel spec of this environment wins over any in the user's home, and
    # jupyter_core uses its platformdirs locations (no deprecation warning).
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "1")
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    assert Path(spec.resource_dir).is_relative_to(sys.prefix), spec.resource_dir

    demo = tmp_path / "demo"
    out = subprocess.run([sys.executable, str(REPO / "examples" / "support_agent.py"), str(demo)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    monkeypatch.setenv("BASTION_DEMO_DIR", str(demo))

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells), "commit it without outputs"
    client = nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)
    assert f"guard directory: {demo}" in text
    assert "<VerifyReport ok:" in text
    assert "network-allowlist" in text and "budget:per-customer-daily" in text
    assert "rejected" in text and "bob" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2
    for name in ("cost_over_time.png", "decisions_by_policy.png"):
        assert (demo / name).stat().st_size > 10_000
